"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights, a zero-one loss that
pushes them to 0 or 1, and threshold discretization."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import torch

from nasctl.errors import NasctlError
from nasctl.genotypes.spaces import FAIRDARTS_OPS
from nasctl.search.discretize import choose_with_fallback, edge_threshold, sparse_threshold
from nasctl.search.methods import Discretized, Hyper, SearchMethod, register
from nasctl.search.space import Discretizer, Supernet
from nasctl.search.supernet import SearchNetwork

if TYPE_CHECKING:
    from nasctl.search.mbconv import ChainChoice, MBConvSupernet


@register
class FairDarts(SearchMethod):
    name = "fairdarts"
    default_ops = FAIRDARTS_OPS
    # Official search defaults (the FairDARTS code): SGD 0.005 -> 0.001 cosine, Adam 3e-3.
    hyper = Hyper(lr=0.005, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                  arch_lr=3e-3, arch_betas=(0.9, 0.999), arch_weight_decay=1e-3,
                  batch_size=128, epochs=50)
    alpha_init = 0.0  # sigmoid(0) = 0.5 for every op

    def __init__(self, w01: float = 10.0, loss01: Literal["l2", "l1"] = "l2",
                 discretization: Literal["sparse", "edge"] = "sparse",
                 threshold: float = 0.85, edge_k: int = 2) -> None:
        if loss01 not in ("l2", "l1"):
            raise NasctlError(f"--loss01 must be l2 or l1, got {loss01!r}")
        if discretization not in ("sparse", "edge"):
            raise NasctlError(f"--discretization must be sparse or edge, got {discretization!r}")
        if not 0.0 < threshold < 1.0:
            raise NasctlError(f"--threshold must be between 0 and 1, got {threshold}")
        if edge_k < 1:
            raise NasctlError(f"--edge-k must be at least 1, got {edge_k}")
        self.w01, self.loss01 = w01, loss01
        self.edge_k = edge_k
        self.discretization, self.threshold = discretization, threshold

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(alpha)

    def regularizer(self, model: Supernet) -> torch.Tensor | None:
        """Zero-one loss: -(1/N) sum (sigma - 0.5)^2 (or |sigma - 0.5|) over both cells."""
        if self.w01 == 0:
            return None
        sig = torch.cat([torch.sigmoid(a).flatten() for a in model.arch_parameters()])
        dev = (sig - 0.5).abs() if self.loss01 == "l1" else (sig - 0.5).pow(2)
        return -self.w01 * dev.mean()

    def discretize(self, model: SearchNetwork,
                   probe: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
                   ) -> Discretized:
        choices, notes = [], []
        for cell_name, w in zip(("normal", "reduce"), model.arch_weights(), strict=True):
            weights = w.detach().cpu().double().numpy()
            if self.discretization == "sparse":
                edges = sparse_threshold(weights, model.ops, model.num_nodes, self.threshold)
            else:
                edges = edge_threshold(weights, model.ops, model.num_nodes, self.threshold,
                                       self.edge_k)
            choice = choose_with_fallback(edges, weights, model.ops, model.num_nodes)
            if choice.fallback:
                notes.append(f"no {cell_name}-cell op reached sigmoid >= {self.threshold}; kept "
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
                if float(w[best]) < self.threshold:
                    fallback.append(i)
                ops.append(choices[best])
        notes = [] if not fallback else [
            f"{len(fallback)} of {len(ops)} layers had no candidate with sigmoid >= "
            f"{self.threshold}; kept their strongest candidate instead"]
        settings = {"rule": "strongest candidate per layer reaching the threshold",
                    **self.options()}
        return ChainChoice(ops, settings, notes, fallback)

    def discretizer(self, space: str) -> Discretizer | None:
        rules: dict[str, Discretizer] = {"cell": self.discretize,
                                         "mbconv": self.discretize_chain}
        return rules.get(space)

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"w01": self.w01, "loss01": self.loss01,
                                   "discretization": self.discretization,
                                   "threshold": self.threshold}
        if self.discretization == "edge":
            options["edge_k"] = self.edge_k  # ops kept per edge at most (official: 2)
        return options
