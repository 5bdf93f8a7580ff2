"""Datasets, splits and loaders."""

from nasctl.data.datasets import DATASETS, DatasetInfo, dataset_info, get_dataset
from nasctl.data.loaders import make_loader, search_split, set_loader_epoch

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "dataset_info",
    "get_dataset",
    "make_loader",
    "search_split",
    "set_loader_epoch",
]
