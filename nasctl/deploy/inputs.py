"""Real input images for parity checks and INT8 calibration, normalized the way the model
expects: a named dataset (``digits`` by default: embedded, offline) or an ImageFolder tree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from nasctl.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import torch


def sample_images(count: int, input_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                  source: str | os.PathLike[str] = "digits", split: str = "test",
                  data_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> np.ndarray:
    """``count`` images as float32 [N, 3, input_size, input_size], a fixed random subset."""
    return sample_labelled_images(count, input_size, mean, std, source, split, data_dir,
                                  seed)[0]


def sample_labelled_images(count: int, input_size: int, mean: tuple[float, ...],
                           std: tuple[float, ...], source: str | os.PathLike[str] = "digits",
                           split: str = "test", data_dir: str | os.PathLike[str] | None = None,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Images as ``sample_images`` gives them, and their class labels (int64 [N]) when the
    source is a named dataset; an image folder's class indices are not the model's, so
    its labels are None."""
    import torch

    text = os.fspath(source)
    labels = None
    if Path(text).is_dir():
        images = _from_folder(Path(text), count, input_size, seed)
    else:
        images, label_tensor = _from_dataset(text, split, data_dir, count, seed)
        labels = label_tensor.numpy()
    images = _resize(images, input_size)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((images - m) / s).contiguous().numpy(), labels


def _from_dataset(name: str, split: str, data_dir: str | os.PathLike[str] | None, count: int,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] (the dataset's own normalization is undone) and labels."""
    import torch

    from nasctl.data import dataset_info, get_dataset

    info = dataset_info(name)
    dataset = get_dataset(name, split=split, data_dir=data_dir)
    picks = _pick(len(dataset), count, seed)  # type: ignore[arg-type]
    samples = [dataset[i] for i in picks]
    batch = torch.stack([image for image, _ in samples])
    labels = torch.tensor([int(label) for _, label in samples], dtype=torch.int64)
    m = torch.tensor(info.mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(info.std, dtype=torch.float32).view(1, -1, 1, 1)
    return batch * s + m, labels


def _from_folder(folder: Path, count: int, input_size: int, seed: int) -> torch.Tensor:
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
    return torch.stack([dataset[i][0] for i in _pick(len(dataset), count, seed)])


def _pick(total: int, count: int, seed: int) -> list[int]:
    import numpy as np

    if total == 0:
        raise DataError("the input dataset is empty")
    rng = np.random.default_rng(seed)
    if count <= total:
        return sorted(rng.choice(total, size=count, replace=False).tolist())
    return rng.choice(total, size=count, replace=True).tolist()


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812

    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True).clamp_(0.0, 1.0)
