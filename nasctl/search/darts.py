"""DARTS (Liu et al., ICLR 2019): softmax over ops, first- or second-order (unrolled)
architecture gradient, top-2 edges per node by their strongest non-``none`` op."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nasctl.genotypes.spaces import DARTS_OPS
from nasctl.search.discretize import choose_with_fallback, top_edges
from nasctl.search.methods import Discretized, Hyper, SearchMethod, register
from nasctl.search.options import option
from nasctl.search.space import Discretizer
from nasctl.search.supernet import SearchNetwork

if TYPE_CHECKING:
    from nasctl.search.step import SearchStep

DARTS_HYPER = Hyper(lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                    arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                    batch_size=64, epochs=50)


def darts_rule(model: SearchNetwork) -> Discretized:
    choices = []
    for w in model.arch_weights():
        weights = w.detach().cpu().double().numpy()
        edges = top_edges(weights, model.ops, model.num_nodes, k=2)
        choices.append(choose_with_fallback(edges, weights, model.ops, model.num_nodes))
    return Discretized(choices[0], choices[1], {"rule": "top2-edges-strongest-op"})


@dataclass(frozen=True)
class DartsOptions:
    unrolled: bool = option(False, "second-order (unrolled) architecture gradient",
                            flag="--unrolled/--first-order")


@register
class Darts(SearchMethod):
    name = "darts"
    Options = DartsOptions
    default_ops = DARTS_OPS
    hyper = DARTS_HYPER

    def arch_gradients(self, step: SearchStep, xw: torch.Tensor, yw: torch.Tensor,
                       xa: torch.Tensor, ya: torch.Tensor
                       ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor] | None:
        if not self.config.unrolled:
            return None
        from nasctl.search.unrolled import unrolled_arch_grads

        return unrolled_arch_grads(step, xw, yw, xa, ya)

    def discretizer(self, space: str) -> Discretizer | None:
        return self.discretize if space == "cell" else None

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha, dim=-1)

    def discretize(self, model: SearchNetwork,
                   probe: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
                   ) -> Discretized:
        d = darts_rule(model)
        d.settings.update(self.options())
        return d
