"""Optimizer, schedule and one training step, shared by the loop and the benchmark."""

from __future__ import annotations

import torch
from torch import nn

from nasctl.device import autocast
from nasctl.train.config import TrainConfig


def make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: cosine to ``lr_min`` over the run, or x ``lr_gamma``."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs,
                                                          eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_gamma)


def drop_path_at(cfg: TrainConfig, epoch: int) -> float:
    """The DARTS ramp: 0 in the first epoch, rising linearly towards ``cfg.drop_path``."""
    return cfg.drop_path * epoch / cfg.epochs


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (with the auxiliary loss), backward, clip, step.

    Returns the detached loss and logits; nothing here synchronises with the GPU."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, cfg.amp):
        out = model(images)
        if isinstance(out, tuple):
            logits, aux_logits = out
            loss = criterion(logits, labels) + cfg.auxiliary_weight * criterion(aux_logits, labels)
        else:
            logits = out
            loss = criterion(logits, labels)
    scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach(), logits.detach()


def to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
              channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)
