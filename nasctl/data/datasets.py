"""Datasets by name: the embedded `digits`, CIFAR-10/100 from a local torchvision folder,
ImageNet from an ImageFolder tree. Every sample is (normalized float tensor [3,H,W], label).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nasctl.data import digits
from nasctl.data.transforms import Cutout, RandomShift
from nasctl.errors import DataError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


CIFAR_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", 10, 32, digits.MEAN, digits.STD),
    "cifar10": DatasetInfo("cifar10", 10, 32, CIFAR_MEAN, CIFAR_STD),
    "cifar100": DatasetInfo("cifar100", 100, 32, CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": DatasetInfo("imagenet", 1000, 224, IMAGENET_MEAN, IMAGENET_STD),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})") from None


class TensorImages(Dataset[tuple[torch.Tensor, int]]):
    """In-memory images with an optional per-sample tensor transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])


class _Compose:
    def __init__(self, steps: list[Callable[[Any], Any]]) -> None:
        self.steps = steps

    def __call__(self, x: Any) -> Any:
        for step in self.steps:
            x = step(x)
        return x


def get_dataset(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                download: bool = False, augment: bool = False, cutout: int = 0) -> Dataset[Any]:
    """A dataset split by name. ``augment`` applies the papers' training augmentation."""
    info = dataset_info(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} (train or test)")
    if name == "digits":
        return _digits(split, info, augment, cutout)
    if data_dir is None:
        raise DataError(f"{name} needs --data-dir (the folder holding the dataset)")
    root = Path(data_dir)
    if name in ("cifar10", "cifar100"):
        return _cifar(name, split, root, download, info, augment, cutout)
    return _imagenet(split, root, info, augment, cutout)


def _digits(split: str, info: DatasetInfo, augment: bool, cutout: int) -> Dataset[Any]:
    images, labels = digits.digits_tensors(split)
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    images = (images - mean) / std
    steps: list[Callable[[Any], Any]] = []
    if augment:
        steps.append(RandomShift(2))
    if cutout > 0:
        steps.append(Cutout(cutout))
    return TensorImages(images, labels, _Compose(steps) if steps else None)


def _cifar(name: str, split: str, root: Path, download: bool, info: DatasetInfo,
           augment: bool, cutout: int) -> Dataset[Any]:
    from torchvision import datasets, transforms

    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    if not download and not (root / folder).is_dir():
        raise DataError(
            f"{name} not found: expected {root / folder}/ in torchvision's layout "
            "(the python version of the dataset); pass --download to fetch it (needs a network)"
        )
    steps: list[Any] = []
    if augment:
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if cutout > 0:
        steps.append(Cutout(cutout))
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        return cls(str(root), train=split == "train", transform=transforms.Compose(steps),
                   download=download)
    except RuntimeError as exc:
        damage = _cifar_damage(cls, root / folder)
        if damage is not None:
            raise DataError(f"{name}: {damage}; re-download it with --download") from None
        raise DataError(f"{name} under {root / folder}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{name}: could not download or read {root} ({exc})") from None


def _cifar_damage(cls: Any, folder: Path) -> str | None:
    """Which file of a torchvision CIFAR folder is missing, truncated or not the published
    one (torchvision only says "not found or corrupted"); None if every file checks out.
    A missing file is named before a truncated one, and that before a checksum mismatch."""
    from torchvision.datasets.utils import check_integrity

    files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    found: list[tuple[int, str]] = []
    for filename, md5 in files:
        path = folder / filename
        if not path.is_file():
            found.append((0, f"{path} is missing"))
        elif not check_integrity(str(path), md5):
            if _ends_a_pickle(path):
                found.append((2, f"{path} does not match torchvision's checksum (corrupt, or "
                                 "not the official file)"))
            else:
                found.append((1, f"{path} is truncated"))
    return min(found, key=lambda f: f[0])[1] if found else None


def _ends_a_pickle(path: Path) -> bool:
    """Whether the file ends with pickle's STOP opcode, as every complete batch file does
    (checked without unpickling an untrusted file)."""
    with path.open("rb") as fh:
        if fh.seek(0, os.SEEK_END) == 0:
            return False
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"."


def _imagenet(split: str, root: Path, info: DatasetInfo, augment: bool,
              cutout: int) -> Dataset[Any]:
    from torchvision import datasets, transforms

    folder = root / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise DataError(
            f"imagenet not found: expected {folder}/ with one sub-folder of images per class "
            "(ImageFolder layout: train/ and val/)"
        )
    if augment:
        steps: list[Any] = [
            transforms.RandomResizedCrop(info.input_size),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.4, 0.4, 0.4, 0.2),
        ]
    else:
        steps = [transforms.Resize(256), transforms.CenterCrop(info.input_size)]
    steps += [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)]
    if cutout > 0:
        steps.append(Cutout(cutout))
    try:
        return datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagenet under {folder}: {exc}") from None
