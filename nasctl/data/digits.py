"""The embedded offline dataset: scikit-learn's 8x8 handwritten digits (1,797 images from
UCI's optdigits), upscaled to 32x32 RGB so CIFAR-shaped networks run on it unchanged.

The file ships inside the scikit-learn wheel; it is read directly (scikit-learn itself is
not imported, which would take a second). The train/test split is fixed: 1,437 / 360.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import torch

from nasctl.errors import DataError

NUM_TEST = 360
SPLIT_SEED = 20200101  # fixed forever: the split is part of the dataset's definition
SIZE = 32
MEAN = (0.3055,) * 3  # measured on the upscaled train split
STD = (0.3241,) * 3


def _data_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits dataset ships with scikit-learn, which is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.exists():
        raise DataError(f"scikit-learn is installed but its digits data is missing ({path})")
    return path


@cache
def _load_all() -> tuple[torch.Tensor, torch.Tensor]:
    with gzip.open(_data_file(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    pixels = torch.from_numpy(table[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    labels = torch.from_numpy(table[:, 64].astype(np.int64))
    images = torch.nn.functional.interpolate(pixels, size=(SIZE, SIZE), mode="bilinear",
                                             align_corners=False)
    return images.expand(-1, 3, -1, -1).contiguous(), labels


def digits_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unnormalized images in [0, 1], shape [N, 3, 32, 32], and int64 labels."""
    images, labels = _load_all()
    order = torch.from_numpy(np.random.RandomState(SPLIT_SEED).permutation(len(labels)))
    idx = order[NUM_TEST:] if split == "train" else order[:NUM_TEST]
    return images[idx], labels[idx]
