"""Search-path kernels that keep less for backward: a BatchNorm that keeps its producer's
input instead of its own input, max pooling without argmax indices.

In the search supernet every 1x1 conv and every pooling op feeds a batch-statistics
BatchNorm, whose backward needs the BN's input: autograd keeps the conv's (or pool's)
output alive from forward to backward, beside the conv's input that the conv keeps anyway.
:func:`batch_norm_recomputed` keeps only the producer's input and the BN's batch statistics,
and runs the producer again in backward: a 1x1 conv or a 3x3 pool is cheap next to the
memory of one more activation per op. Same kernels in the same order, so the values and
gradients equal those of ``F.batch_norm(producer(x))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.modules.utils import _pair


class BNInput(NamedTuple):
    """A stage before a BatchNorm as a pure function of its input and its parameters."""

    fn: Callable[..., torch.Tensor]
    params: tuple[nn.Parameter, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.params)


class _RecomputedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, fn: Callable[..., torch.Tensor], eps: float, x: torch.Tensor,
                weight: torch.Tensor | None, *params: torch.Tensor) -> torch.Tensor:
        ctx.fn, ctx.eps, ctx.device_type = fn, eps, x.device.type
        ctx.autocast_dtype = (torch.get_autocast_dtype(x.device.type)
                              if torch.is_autocast_enabled(x.device.type) else None)
        # detached: ops dispatch on requires_grad even without grad mode (max pooling would
        # compute its argmax indices)
        z = fn(x.detach(), *(p.detach() for p in params))
        out, mean, invstd = torch.ops.aten.native_batch_norm(z, weight, None, None, None, True,
                                                             0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd, *params)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd, *params = ctx.saved_tensors
        needs = ctx.needs_input_grad
        inputs, wanted = [x, *params], [needs[2], *needs[4:]]
        autocast = (torch.autocast(ctx.device_type, ctx.autocast_dtype)
                    if ctx.autocast_dtype is not None else contextlib.nullcontext())
        with torch.enable_grad(), autocast:
            leaves = [t.detach().requires_grad_(w) for t, w in zip(inputs, wanted, strict=True)]
            z = ctx.fn(*leaves)
        grad_z, grad_weight, _ = torch.ops.aten.native_batch_norm_backward(
            grad, z.detach(), weight, None, None, mean, invstd, True, ctx.eps,
            [any(wanted), needs[3], False])
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if any(wanted):
            found = iter(torch.autograd.grad(z, [t for t, w in zip(leaves, wanted, strict=True)
                                                 if w], grad_z))
            grads = [next(found) if w else None for w in wanted]
        return None, None, grads[0], grad_weight, *grads[1:]


def batch_norm_recomputed(pre: BNInput, x: torch.Tensor, weight: torch.Tensor | None,
                          eps: float) -> torch.Tensor:
    """``F.batch_norm(pre(x), None, None, weight, None, training=True, eps=eps)`` keeping
    ``x`` (not ``pre(x)``) for backward, which runs ``pre`` again."""
    return _RecomputedBatchNorm.apply(pre.fn, eps, x, weight, *pre.params)


class _MaxPoolNoIndices(torch.autograd.Function):
    """Max pooling that keeps only its input for backward and finds the argmax again
    there: int64 indices would cost twice the memory of the pooled map."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.pool = pool
        return F.max_pool2d(x.detach(), pool.kernel_size, pool.stride, pool.padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        p = ctx.pool
        _, indices = F.max_pool2d(x, p.kernel_size, p.stride, p.padding, return_indices=True)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, _pair(p.kernel_size), _pair(p.stride), _pair(p.padding), [1, 1], False,
            indices), None


def max_pool_no_indices(x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """``pool(x)`` (dilation 1, floor mode) keeping ``x`` instead of argmax indices."""
    return _MaxPoolNoIndices.apply(x, pool)
