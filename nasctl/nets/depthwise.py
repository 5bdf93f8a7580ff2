"""Dilated depthwise convolution computed on the input's phases (a CPU training speed-up).

A depthwise kxk conv with dilation d and "same" padding d*(k-1)/2 only ever combines
pixels whose coordinates agree modulo d. Splitting the input into its d*d phases
(``x[:, :, a::d, b::d]``) turns it into an undilated kxk conv with padding (k-1)/2 on each
phase; with stride d only phase (0, 0) is read. That is the same function, but PyTorch's
CPU backward for dilated depthwise convs is 5-10x slower than for undilated ones (the
weight gradient of a 5x5 dilation-2 conv at 32x32x16, batch 32: 12.6 ms against 2.7 ms),
and DARTS' ``dil_conv`` ops are the bulk of a CPU search step's backward.

The autograd function saves the unsplit input (which the ReLU before it saves anyway) and
splits it again in backward, so it costs no extra memory. Anything else (GPU, eval,
export, meta-device counting, odd sizes) runs the ordinary convolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nasctl.device import memory_format_of


def _split_phases(x: torch.Tensor, d: int,
                  memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """[B, C, H, W] -> [d*d*B, C, H/d, W/d], phase (a, b) at batch block a*d + b, in
    ``memory_format`` (default: x's). One copy, whatever x's strides."""
    b, c, h, w = x.shape
    out = torch.empty((d * d * b, c, h // d, w // d), dtype=x.dtype, device=x.device,
                      memory_format=memory_format or memory_format_of(x))
    phases = x.unflatten(2, (h // d, d)).unflatten(4, (w // d, d)).permute(3, 5, 0, 1, 2, 4)
    out.view(d, d, b, c, h // d, w // d).copy_(phases)
    return out


def _merge_phases(y: torch.Tensor, d: int) -> torch.Tensor:
    """The inverse of :func:`_split_phases`."""
    db, c, h, w = y.shape
    b = db // (d * d)
    out = torch.empty((b, c, h * d, w * d), dtype=y.dtype, device=y.device,
                      memory_format=memory_format_of(y))
    out.view(b, c, h, d, w, d).copy_(y.view(d, d, b, c, h, w).permute(2, 3, 4, 0, 5, 1))
    return out


class _PhaseDepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, d: int,
                stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.d, ctx.stride = d, stride
        pad = (weight.shape[-1] - 1) // 2
        if stride == d:
            return F.conv2d(x[:, :, ::d, ::d], weight, padding=pad, groups=x.shape[1])
        y = F.conv2d(_split_phases(x, d), weight, padding=pad, groups=x.shape[1])
        return _merge_phases(y, d)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        d, channels = ctx.d, x.shape[1]
        pad = (weight.shape[-1] - 1) // 2
        strided = ctx.stride == d
        inp = x[:, :, ::d, ::d] if strided else _split_phases(x, d)
        grad_in = grad if strided else _split_phases(grad, d, memory_format_of(x))
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False]
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad_in, inp, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], channels,
            mask)
        if gx is not None:
            if strided:
                full = torch.zeros_like(x)
                full[:, :, ::d, ::d] = gx
                gx = full
            else:
                gx = _merge_phases(gx, d)
        return gx, gw, None, None


class DilatedDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state_dict) for a depthwise, bias-free, dilated
    kxk conv with "same" padding; in CPU training it runs on the input's phases unless
    ``phase_split`` is False (the benchmarks' stand-in for the official code)."""

    phase_split = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._use_phases(x):
            return super().forward(x)
        return _PhaseDepthwiseConv.apply(x, self.weight, self.dilation[0], self.stride[0])

    def conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This conv with ``weight``, on the input's phases wherever they apply whatever the
        grad mode: a recomputation in backward then runs the kernels of the forward it
        repeats, so it gives the same values."""
        if self._phases_apply(x):
            return _PhaseDepthwiseConv.apply(x, weight, self.dilation[0], self.stride[0])
        return self._conv_forward(x, weight, None)

    def _use_phases(self, x: torch.Tensor) -> bool:
        """Whether the phase form applies here and pays (CPU training with gradients)."""
        return self.training and torch.is_grad_enabled() and self._phases_apply(x)

    def _phases_apply(self, x: torch.Tensor) -> bool:
        """Whether the phase form computes this conv on ``x`` (a CPU tensor, sizes that
        split) and is wanted."""
        d, k, s = self.dilation[0], self.kernel_size[0], self.stride[0]
        return (self.phase_split and x.device.type == "cpu" and x.dtype == self.weight.dtype
                and not torch.jit.is_tracing()
                and self.groups == self.in_channels == self.out_channels
                and self.bias is None and self.padding_mode == "zeros" and k % 2 == 1 and d > 1
                and self.dilation == (d, d) and self.kernel_size == (k, k)
                and self.padding == (d * (k - 1) // 2,) * 2 and self.stride in ((1, 1), (d, d))
                and (s == d or (x.shape[2] % d == 0 and x.shape[3] % d == 0)))
