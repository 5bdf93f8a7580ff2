"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights, a zero-one loss that
pushes them to 0 or 1, and threshold discretization."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nasctl.genotypes.spaces import FAIRDARTS_OPS
from nasctl.search.discretize import choose_with_fallback, edge_threshold, sparse_threshold
from nasctl.search.methods import Discretized, Hyper, SearchMethod, register
from nasctl.search.options import option
from nasctl.search.space import Discretizer, Supernet
from nasctl.search.supernet import SearchNetwork
from nasctl.settings import NON_NEGATIVE, UNIT_OPEN, Rule

if TYPE_CHECKING:
    from nasctl.search.mbconv import ChainChoice, MBConvSupernet


@dataclass(frozen=True)
class FairDartsOptions:
    w01: float = option(10.0, "zero-one loss weight", NON_NEGATIVE)
    loss01: str = option("l2", "zero-one loss: l2 or l1", Rule(choices=("l2", "l1")))
    discretization: str = option("sparse", "sparse (top-2 edges per node, each kept if its "
                                 "op reaches the threshold) or edge (the official rule: up "
                                 "to --edge-k ops per edge reaching it)",
                                 Rule(choices=("sparse", "edge")))
    threshold: float = option(0.85, "sigmoid threshold an op must reach to be kept", UNIT_OPEN)
    edge_k: int = option(2, "edge rule: ops kept per edge at most (the official rule keeps 2)",
                         Rule(low=1, high=64))


@register
class FairDarts(SearchMethod):
    name = "fairdarts"
    Options = FairDartsOptions
    default_ops = FAIRDARTS_OPS
    # Official search defaults (the FairDARTS code): SGD 0.005 -> 0.001 cosine, Adam 3e-3.
    hyper = Hyper(lr=0.005, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                  arch_lr=3e-3, arch_betas=(0.9, 0.999), arch_weight_decay=1e-3,
                  batch_size=128, epochs=50)
    alpha_init = 0.0  # sigmoid(0) = 0.5 for every op

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(alpha)

    def regularizer(self, model: Supernet) -> torch.Tensor | None:
        """Zero-one loss: -(1/N) sum (sigma - 0.5)^2 (or |sigma - 0.5|) over both cells."""
        if self.config.w01 == 0:
            return None
        sig = torch.cat([torch.sigmoid(a).flatten() for a in model.arch_parameters()])
        dev = (sig - 0.5).abs() if self.config.loss01 == "l1" else (sig - 0.5).pow(2)
        return -self.config.w01 * dev.mean()

    def discretize(self, model: SearchNetwork,
                   probe: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
                   ) -> Discretized:
        o = self.config
        choices, notes = [], []
        for cell_name, w in zip(("normal", "reduce"), model.arch_weights(), strict=True):
            weights = w.detach().cpu().double().numpy()
            if o.discretization == "sparse":
                edges = sparse_threshold(weights, model.ops, model.num_nodes, o.threshold)
            else:
                edges = edge_threshold(weights, model.ops, model.num_nodes, o.threshold,
                                       o.edge_k)
            choice = choose_with_fallback(edges, weights, model.ops, model.num_nodes)
            if choice.fallback:
                notes.append(f"no {cell_name}-cell op reached sigmoid >= {o.threshold}; kept "
                             "the strongest op per node instead")
            choices.append(choice)
        return Discretized(choices[0], choices[1], self.options(), notes)

    def discretize_chain(self, model: MBConvSupernet, probe: Any = None) -> ChainChoice:
        """Per layer, the strongest candidate whose sigmoid reaches the threshold; where
        none does, the strongest candidate (a fallback, named in the notes)."""
        from nasctl.search.mbconv import ChainChoice

        ops, fallback = [], []
        with torch.no_grad():
            for i, (choices, w) in enumerate(zip(model.choices, model.arch_weights(),
                                                 strict=True)):
                best = int(torch.argmax(w))
                if float(w[best]) < self.config.threshold:
                    fallback.append(i)
                ops.append(choices[best])
        notes = [] if not fallback else [
            f"{len(fallback)} of {len(ops)} layers had no candidate with sigmoid >= "
            f"{self.config.threshold}; kept their strongest candidate instead"]
        settings = {"rule": "strongest candidate per layer reaching the threshold",
                    **self.options()}
        return ChainChoice(ops, settings, notes, fallback)

    def discretizer(self, space: str) -> Discretizer | None:
        rules: dict[str, Discretizer] = {"cell": self.discretize,
                                         "mbconv": self.discretize_chain}
        return rules.get(space)
