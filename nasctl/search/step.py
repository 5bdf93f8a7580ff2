"""One bilevel search step, for any search space: an architecture step on a batch of the
architecture half, then a weight step on a batch of the weight half (the first-order
alternation of DARTS and FairDARTS; a method may replace the architecture gradient, as
DARTS's second-order rule does).

Only the parameters a step updates get gradients: the architecture step freezes the
weights (fewer saved tensors), the weight step freezes the alphas. Under data parallelism
the gradients are averaged over ranks with one flat all-reduce per step (``autograd.grad``
on the alphas bypasses DDP's reducer, so the search keeps its own sync).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812

from nasctl.device import autocast, make_grad_scaler
from nasctl.distributed import DistInfo, all_reduce_mean

if TYPE_CHECKING:
    from nasctl.search.config import SearchConfig
    from nasctl.search.methods import SearchMethod


class SearchStep:
    """The supernet with its two optimizers, its scaler and the two steps."""

    def __init__(self, model: Any, method: SearchMethod, cfg: SearchConfig,
                 device: torch.device, dist: DistInfo | None = None,
                 cost_loss: Callable[[], torch.Tensor | None] | None = None) -> None:
        assert cfg.lr is not None and cfg.arch_lr is not None
        self.model, self.method, self.cfg = model, method, cfg
        self.cost_loss = cost_loss or (lambda: None)
        self.device, self.dist = device, dist or DistInfo()
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.weights = list(model.weight_parameters())
        self.alphas = list(model.arch_parameters())
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr, momentum=cfg.momentum or 0.0,
                                     weight_decay=cfg.weight_decay or 0.0)
        self.a_opt = torch.optim.Adam(self.alphas, cfg.arch_lr, betas=method.hyper.arch_betas,
                                      weight_decay=cfg.arch_weight_decay or 0.0)
        self.scaler = make_grad_scaler(device, cfg.amp)

    def to(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    def loss(self, x: torch.Tensor, y: torch.Tensor, arch: bool,
             amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, correct)``; the architecture loss adds the method's regulariser and the
        costs' penalties (a MAC or latency target) to the cross-entropy."""
        with autocast(self.device, self.cfg.amp if amp else "off"):
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y)
        if arch:
            for extra in (self.method.regularizer(self.model), self.cost_loss()):
                if extra is not None:
                    loss = loss + extra
        return loss, (logits.argmax(1) == y).sum()

    def arch_step(self, xa: torch.Tensor, ya: torch.Tensor, xw: torch.Tensor,
                  yw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.a_opt.zero_grad(set_to_none=True)
        own = self.method.arch_gradients(self, xw, yw, xa, ya)
        if own is not None:
            grads, loss, correct = own
            grads = list(self.scaler.scale(grads))  # fp32 grads; step() unscales them
        else:
            for p in self.weights:  # only alpha gradients: no weight grads, fewer saved tensors
                p.requires_grad_(False)
            try:
                loss, correct = self.loss(xa, ya, arch=True)
                grads = list(torch.autograd.grad(self.scaler.scale(loss), self.alphas))
            finally:
                for p in self.weights:
                    p.requires_grad_(True)
        for p, g in zip(self.alphas, grads, strict=True):
            p.grad = g
        self._sync(self.alphas)
        self.scaler.step(self.a_opt)
        return loss.detach(), correct

    def weight_step(self, xw: torch.Tensor, yw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.w_opt.zero_grad(set_to_none=True)
        for p in self.alphas:
            p.requires_grad_(False)
        try:
            # The zero-one loss has no weight gradient, so the weight step uses CE alone.
            loss, correct = self.loss(xw, yw, arch=False)
            self.scaler.scale(loss).backward()
        finally:
            for p in self.alphas:
                p.requires_grad_(True)
        self._sync(self.weights)
        self.scaler.unscale_(self.w_opt)
        torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip or math.inf)
        self.scaler.step(self.w_opt)
        return loss.detach(), correct

    def step(self, xa: torch.Tensor, ya: torch.Tensor, xw: torch.Tensor,
             yw: torch.Tensor) -> torch.Tensor:
        """Both steps; returns [arch loss * n, arch correct, weight loss * n, weight
        correct] on the device (no host sync)."""
        a_loss, a_correct = self.arch_step(xa, ya, xw, yw)
        w_loss, w_correct = self.weight_step(xw, yw)
        self.scaler.update()
        return torch.stack([a_loss.double() * len(ya), a_correct.double(),
                            w_loss.double() * len(yw), w_correct.double()])

    def _sync(self, params: list[torch.nn.Parameter]) -> None:
        if not self.dist.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = all_reduce_mean(torch.cat([g.flatten() for g in grads]), self.dist)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def state_dict(self) -> dict[str, Any]:
        return {"w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.scaler.load_state_dict(state["scaler"])
