"""Splits and loaders: the search's weight/architecture halves, distributed sampling."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from nasctl.errors import DataError


def search_split(dataset: Dataset[Any], portion: float = 0.5,
                 seed: int = 0) -> tuple[Subset[Any], Subset[Any]]:
    """Split a training set into the weight half and the architecture half (DARTS: 50/50).

    DARTS takes the first ``portion`` of the training set for weights; we shuffle with a
    fixed seed first so that class-sorted folders still give both halves every class."""
    if not 0.0 < portion < 1.0:
        raise DataError(f"--train-portion must be between 0 and 1, got {portion}")
    n = len(dataset)  # type: ignore[arg-type]
    split = int(n * portion)
    if split == 0 or split == n:
        raise DataError(f"a dataset of {n} images cannot be split {portion:.2f}/{1 - portion:.2f}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[:split]), Subset(dataset, order[split:])


def make_loader(dataset: Dataset[Any], batch_size: int, shuffle: bool, seed: int = 0,
                distributed: bool = False, drop_last: bool = False,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader[Any]:
    """A DataLoader; with ``distributed`` a DistributedSampler splits the data by rank
    (call ``set_loader_epoch`` every epoch so shuffling changes)."""
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=generator,
    )


def set_loader_epoch(loader: DataLoader[Any], epoch: int) -> None:
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
