"""The MAC cost (``--mac-target``): conv and linear multiply-accumulates of the final
network at its deployment settings, the DARTS convention ``nasctl validate`` reports."""

from __future__ import annotations

from dataclasses import dataclass
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
        """Counted on the meta device (shapes only). Units that take several inputs (node
        sums, concatenations) have no conv or linear MACs."""
        from nasctl.nets.counting import count_macs

        if len(unit.input_shapes) != 1:
            return 0.0
        channels, *size = unit.input_shapes[0]
        with torch.device("meta"):
            module = unit.build()
        return float(count_macs(module, tuple(size), channels=channels).convfc)  # type: ignore[arg-type]

    def describe(self, value: float) -> str:
        return f"{value / 1e6:,.1f}M MACs"
