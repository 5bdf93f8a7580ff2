"""Real input images for parity checks and INT8 calibration, normalized the way the model
expects: a named dataset (``digits`` by default: embedded, offline) or an ImageFolder tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nasctl.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch


def sample_images(count: int, input_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  source: str | os.PathLike[str] = "digits", split: str = "test",
                  data_dir: str | os.PathLike[str] | None = None, seed: int = 0, *,
                  up_to: bool = False, flag: str = "image count",
                  source_flag: str = "image source") -> np.ndarray:
    """``count`` images as float32 [N, 3, input_size, input_size], a fixed random subset
    without repeats (see ``sample_labelled_images`` for ``up_to`` and ``flag``)."""
    return sample_labelled_images(count, input_size, mean, std, source, split, data_dir,
                                  seed, up_to=up_to, flag=flag, source_flag=source_flag)[0]


def sample_labelled_images(count: int, input_size: int, mean: tuple[float, ...],
                           std: tuple[float, ...], source: str | os.PathLike[str] = "digits",
                           split: str = "test", data_dir: str | os.PathLike[str] | None = None,
                           seed: int = 0, *, up_to: bool = False, flag: str = "image count",
                           source_flag: str = "image source",
                           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as ``sample_images`` gives them, and their class labels (int64 [N]) when the
    source is a named dataset; an image folder's class indices are not the model's, so
    its labels are None. ``up_to``: at most ``count`` (all the source has when it has
    fewer); otherwise more than the source holds is a DataError naming ``flag``; a source
    that is neither is one naming ``source_flag``."""
    import torch

    from nasctl.data import DATASETS

    text = os.fspath(source)
    if text not in DATASETS and not Path(text).is_dir():
        raise DataError(f"{source_flag} {text}: no such image folder, and not a dataset "
                        f"({', '.join(DATASETS)})")
    if text == "digits" and data_dir is not None:
        raise DataError("digits ships inside nasctl: --data-dir does not apply to it")
    labels = None
    take = _Take(count, up_to, flag, text if Path(text).is_dir() else f"the {text} {split} split")
    if Path(text).is_dir():
        images = _from_folder(Path(text), take, input_size, seed)
    else:
        images, label_tensor = _from_dataset(text, split, data_dir, take, seed)
        labels = label_tensor.numpy()
    images = _resize(images, input_size)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((images - m) / s).contiguous().numpy(), labels


def _from_dataset(name: str, split: str, data_dir: str | os.PathLike[str] | None, take: _Take,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] (the dataset's own normalization is undone) and labels."""
    import torch

    from nasctl.data import dataset_info, get_dataset

    info = dataset_info(name)
    dataset = get_dataset(name, split=split, data_dir=data_dir)
    picks = take.pick(len(dataset), seed)  # type: ignore[arg-type]
    samples = [dataset[i] for i in picks]
    batch = torch.stack([image for image, _ in samples])
    labels = torch.tensor([int(label) for _, label in samples], dtype=torch.int64)
    m = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    return batch * s + m, labels


def _from_folder(folder: Path, take: _Take, input_size: int, seed: int) -> torch.Tensor:
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Resize(int(round(input_size * 256 / 224))),
        transforms.CenterCrop(input_size),
        transforms.ToTensor(),
    ])
    try:
        dataset = datasets.ImageFolder(str(folder), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(
            f"{folder}: not an image folder (one sub-folder of images per class): {exc}"
        ) from None
    return torch.stack([dataset[i][0] for i in take.pick(len(dataset), seed)])


@dataclass(frozen=True)
class _Take:
    """How many images to pick from a source, and what to say when it has fewer."""

    count: int
    up_to: bool
    flag: str
    where: str

    def pick(self, total: int, seed: int) -> list[int]:
        """Distinct indices, a fixed random subset: never an image twice."""
        import numpy as np

        if total == 0:
            raise DataError(f"{self.where}: the input dataset is empty")
        if self.count > total and not self.up_to:
            raise DataError(f"{self.flag} {self.count} is more than the {total} images of "
                            f"{self.where}")
        size = min(self.count, total)
        rng = np.random.default_rng(seed)
        return sorted(rng.choice(total, size=size, replace=False).tolist())


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812

    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp_(0.0, 1.0)
