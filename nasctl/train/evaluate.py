"""Evaluation: top-1, top-5 and loss of a network on a dataset's test split."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from nasctl.device import autocast
from nasctl.errors import DataError

Event = Callable[[dict[str, Any]], None]


def evaluate_sums(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: str = "off",
    channels_last: bool = False,
    max_batches: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``[loss_sum, top1_correct, top5_correct, count]`` as a float64 tensor on ``device``
    (sums, so ranks can add theirs before dividing)."""
    net.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    with torch.inference_mode():
        for i, (images, labels) in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast(device, amp):
                logits = net(images)
            logits = logits.float()
            loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hit = top == labels.unsqueeze(1)
            sums += torch.stack([loss.double(), hit[:, 0].sum().double(),
                                 hit.any(dim=1).sum().double(),
                                 torch.tensor(float(len(labels)), device=device,
                                              dtype=torch.float64)])
            if on_batch is not None:
                on_batch(i + 1)
    return sums


def summarize(sums: torch.Tensor) -> dict[str, float]:
    """Mean loss and accuracies in percent from ``evaluate_sums`` output."""
    loss_sum, top1, top5, count = sums.tolist()
    n = max(count, 1.0)
    return {"loss": loss_sum / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n,
            "samples": int(count)}


def evaluate_checkpoint(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
    device: str = "auto",
    amp: str = "off",
    max_batches: int | None = None,
    on_event: Event | None = None,
) -> dict[str, Any]:
    """Evaluate a training checkpoint on a test split (its own dataset by default)."""
    from nasctl.data import dataset_info, get_dataset, make_loader
    from nasctl.device import resolve_device
    from nasctl.train.checkpoint import model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path)
    network = ckpt["network"]
    name = dataset or network["dataset"]
    info = dataset_info(name)
    if info.num_classes != network["num_classes"]:
        raise DataError(
            f"{path} was trained for {network['num_classes']} classes, but {name} has "
            f"{info.num_classes}; evaluate it on a dataset with the same classes"
        )
    dev = resolve_device(device)
    net = model_from_checkpoint(ckpt, str(path)).to(dev)
    channels_last = dev.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    test_set = get_dataset(name, "test", data_dir=data_dir)
    loader = make_loader(test_set, batch_size, shuffle=False, pin_memory=dev.type == "cuda")
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    if on_event is not None:
        on_event({"event": "eval_start", "batches": total})

    def tick(done: int) -> None:
        if on_event is not None:
            on_event({"event": "eval_batch", "batch": done, "batches": total})

    metrics = summarize(evaluate_sums(net, loader, dev, amp, channels_last, max_batches, tick))
    return {
        "checkpoint": str(path),
        "dataset": name,
        "split": "test",
        "genotype": ckpt["genotype"].get("name"),
        "epoch": ckpt.get("epoch"),
        "device": str(dev),
        **metrics,
    }
