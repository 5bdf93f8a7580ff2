"""Depthwise convolution with a faster CPU training backward (same function, same
parameters as ``nn.Conv2d``).

PyTorch's CPU backward for depthwise convs is slow where its forward is not (channels_last,
batch 32, 1 thread, ms):

- the input gradient of a stride-1 conv is a forward conv of the incoming gradient with
  the kernel flipped ("same" padding keeps the padding): 0.20 against 1.31 (3x3,
  dilation 2, 32x32x16), 0.26 against 2.58 (5x5, dilation 2), 0.24 against 0.44 (5x5);
- the weight gradient of a dilated conv is that of an undilated conv on the input's d*d
  phases (``x[:, :, a::d, b::d]``, stacked on the batch: a kxk conv with dilation d and
  "same" padding only combines pixels whose coordinates agree modulo d): 0.45 + 0.23
  against 1.59 (3x3), 0.45 + 2.36 against 3.04 (5x5), the 0.45 being the two phase splits;
- with stride d and dilation d only phase (0, 0) is read: an undilated conv on it.

DARTS' ``sep_conv`` and ``dil_conv`` ops are the bulk of a CPU search step's backward. The
autograd function saves only the input (which the ReLU before it saves anyway). Anything
else (GPU, eval, export, meta-device counting, odd sizes, strided undilated convs) runs
the ordinary convolution. Sums run in another order than PyTorch's backward, so gradients
agree with it to rounding (float64: 1e-12), not bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

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


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
                 padding: int, dilation: int) -> torch.Tensor:
    """The weight gradient of the depthwise conv, on the phases when it is dilated."""
    if dilation > 1:
        grad = _split_phases(grad, dilation, memory_format_of(x))
        x = _split_phases(x, dilation)
        padding //= dilation
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], x.shape[1],
        [False, True, False])[1]


Grads = tuple[torch.Tensor | None, torch.Tensor | None]


def _same_backward(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, padding: int,
                   dilation: int, needs: Sequence[bool]) -> Grads:
    gx = gw = None
    if needs[0]:
        gx = F.conv2d(grad, weight.flip(2, 3), padding=padding, dilation=dilation,
                      groups=x.shape[1])
    if needs[1]:
        gw = _weight_grad(grad, x, weight, 1, padding, dilation)
    return gx, gw


def _strided_backward(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, d: int,
                      needs: Sequence[bool]) -> Grads:
    pad = (weight.shape[-1] - 1) // 2
    gx, gw, _ = torch.ops.aten.convolution_backward(
        grad, x[:, :, ::d, ::d], weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
        x.shape[1], [needs[0], needs[1], False])
    if gx is not None:
        full = torch.zeros_like(x)
        full[:, :, ::d, ::d] = gx
        gx = full
    return gx, gw


class _SameDepthwiseConv(torch.autograd.Function):
    """Stride 1, "same" padding, any dilation."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, padding: int,
                dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        return F.conv2d(x, weight, padding=padding, dilation=dilation, groups=x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return (*_same_backward(x, weight, grad, ctx.padding, ctx.dilation,
                                ctx.needs_input_grad), None, None)


class _PhaseStridedDepthwiseConv(torch.autograd.Function):
    """Stride d = dilation d: an undilated conv on phase (0, 0)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, d: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.d = d
        return F.conv2d(x[:, :, ::d, ::d], weight, padding=(weight.shape[-1] - 1) // 2,
                        groups=x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        return (*_strided_backward(x, weight, grad, ctx.d, ctx.needs_input_grad), None)


Form = Literal["same", "strided", "plain"]


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state_dict) for a depthwise, bias-free kxk conv
    with "same" padding; in CPU training its backward runs the faster forms above unless
    ``fast_backward`` is False (the benchmarks' stand-in for the official code)."""

    fast_backward = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        return self.conv(x, self.weight)

    def conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """This conv with ``weight``, in the fast form wherever it applies whatever the grad
        mode: a recomputation in backward then runs the kernels of the forward it repeats,
        so it gives the same values."""
        form = self._form(x)
        if form == "same":
            return _SameDepthwiseConv.apply(x, weight, cast(int, self.padding[0]),
                                            self.dilation[0])
        if form == "strided":
            return _PhaseStridedDepthwiseConv.apply(x, weight, self.dilation[0])
        return self._conv_forward(x, weight, None)

    def conv_vjp(self, x: torch.Tensor, grad: torch.Tensor, params: Sequence[torch.Tensor],
                 needs: Sequence[bool], saved: Any = None) -> Grads:
        """The gradients of :meth:`conv`'s input and weight (None where ``needs`` says
        no), by the ops its autograd backward runs."""
        (weight,) = params
        form = self._form(x)
        if form == "same":
            return _same_backward(x, weight, grad, cast(int, self.padding[0]), self.dilation[0],
                                  needs)
        if form == "strided":
            return _strided_backward(x, weight, grad, self.dilation[0], needs)
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, self.stride, self.padding, self.dilation, False, [0, 0],
            self.groups, [needs[0], needs[1], False])
        return gx, gw

    def _form(self, x: torch.Tensor) -> Form:
        """Which form computes this conv on ``x``: stride 1 ("same"; a dilated one on even
        sizes), stride = dilation ("strided"), or PyTorch's ("plain": anything else, a
        non-CPU tensor, autocast, tracing, ``fast_backward`` off)."""
        d, k, s = self.dilation[0], self.kernel_size[0], self.stride[0]
        fast = (self.fast_backward and x.device.type == "cpu" and x.dtype == self.weight.dtype
                and not torch.is_autocast_enabled("cpu") and not torch.jit.is_tracing()
                and self.groups == self.in_channels == self.out_channels
                and self.bias is None and self.padding_mode == "zeros" and k % 2 == 1
                and self.dilation == (d, d) and self.kernel_size == (k, k)
                and self.padding == (d * (k - 1) // 2,) * 2 and self.stride == (s, s))
        if fast and s == 1 and (d == 1 or (x.shape[2] % d == 0 and x.shape[3] % d == 0)):
            return "same"
        if fast and s == d > 1:
            return "strided"
        return "plain"
