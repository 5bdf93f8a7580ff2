"""Tensor transforms used by the recipes (the papers' CIFAR/ImageNet augmentation)."""

from __future__ import annotations

import torch


class Cutout:
    """Zero one random ``length`` x ``length`` square per image (DeVries & Taylor, 2017)."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        y, x = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        y0, y1 = max(0, y - half), min(h, y + half)
        x0, x1 = max(0, x - half), min(w, x + half)
        img = img.clone()
        img[..., y0:y1, x0:x1] = 0.0
        return img


class RandomShift:
    """Random crop of a zero-padded tensor image (CIFAR's RandomCrop(32, padding=4))."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        p = self.padding
        h, w = img.shape[-2:]
        padded = torch.nn.functional.pad(img, (p, p, p, p))
        dy, dx = (int(v) for v in torch.randint(2 * p + 1, (2,)))
        return padded[..., dy : dy + h, dx : dx + w]
