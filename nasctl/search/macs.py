"""The MAC cost (``--mac-target``): conv and linear multiply-accumulates of the final
network at its deployment settings, the DARTS convention ``nasctl validate`` reports."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch

from nasctl.search.cost import Cost, register
from nasctl.search.options import option
from nasctl.settings import NON_NEGATIVE, POSITIVE

if TYPE_CHECKING:
    from nasctl.nets.units import Unit
    from nasctl.search.config import SearchConfig


@dataclass(frozen=True)
class MacOptions:
    mac_target: float | None = option(None, "MAC budget of the final network in millions "
                                      "(e.g. 386 for the mbconv space at 224px, 500 for "
                                      "cells at CIFAR settings): a differentiable penalty",
                                      POSITIVE, aliases=("--macs-target",))
    mac_weight: float = option(1.0, "weight of the MAC penalty", NON_NEGATIVE,
                               aliases=("--macs-weight",))


@register
class MacCost(Cost):
    name = "macs"
    unit = "MACs"
    target_scale = 1e6
    Options = MacOptions

    @property
    def target(self) -> float | None:
        t = self.config.mac_target
        return None if t is None else t * self.target_scale

    @property
    def weight(self) -> float:
        return float(self.config.mac_weight)

    def reports(self, cfg: SearchConfig) -> bool:
        return True  # counting is cheap: every search reports its network's MACs

    def unit_cost(self, unit: Unit) -> float:
        return float(conv_fc_macs(unit))

    def describe(self, value: float) -> str:
        return f"{value / 1e6:,.1f}M MACs"


def conv_fc_macs(unit: Unit) -> int:
    """Conv and linear multiply-accumulates of one pass through ``unit`` (batch 1), as
    :func:`nasctl.nets.counting.count_macs` counts them. One forward with every ``Conv2d``
    and ``Linear`` replaced by its output shape and every BatchNorm by the identity (no
    arithmetic to speak of): the meta device would do
    the same, but its BatchNorm and concatenation import the compiler (seconds a process),
    and real convolutions cost seconds for a whole catalogue."""
    from torch import nn

    total = 0

    def conv(m: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        nonlocal total
        geometry = zip(x.shape[-2:], m.padding, m.dilation, m.kernel_size, m.stride,
                       strict=True)
        size = [(s + 2 * int(p) - d * (k - 1) - 1) // st + 1  # type: ignore[call-overload]
                for s, p, d, k, st in geometry]
        out = x.new_zeros(x.shape[0], m.out_channels, *size)
        total += out.numel() * math.prod(m.weight.shape[1:])  # type: ignore[operator]
        return out

    def linear(m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += x.numel() // x.shape[-1] * m.in_features * m.out_features
        return x.new_zeros(*x.shape[:-1], m.out_features)

    module = unit.build().eval()
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            setattr(m, "forward", partial(conv, m))  # noqa: B010 - an instance's forward
        elif isinstance(m, nn.Linear):
            setattr(m, "forward", partial(linear, m))  # noqa: B010
        elif isinstance(m, nn.BatchNorm2d):  # keeps the shape: nothing to compute
            setattr(m, "forward", _same)  # noqa: B010
    with torch.inference_mode():
        module(*(torch.zeros(1, *shape) for shape in unit.input_shapes))
    return total


def _same(x: torch.Tensor) -> torch.Tensor:
    return x
