"""The ``cell`` search space: DARTS's normal and reduction cells (:class:`SearchNetwork`),
discretized into a ``darts-cell`` genotype."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nasctl.search.discretize import build_genotype
from nasctl.search.methods import Discretized
from nasctl.search.space import Discretizer, SearchSpace, register
from nasctl.search.supernet import SearchNetwork

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.search.config import SearchConfig
    from nasctl.search.methods import SearchMethod

CELLS = ("normal", "reduce")


@register
class CellSpace(SearchSpace):
    name = "cell"
    help = "DARTS cells"

    def problems(self, cfg: SearchConfig) -> list[str]:
        from nasctl.nets.ops import OPS

        unknown = [op for op in cfg.ops or () if op not in OPS]
        if unknown:
            return [f"unknown ops {', '.join(map(repr, unknown))} (known: {', '.join(OPS)})"]
        return []

    def build(self, cfg: SearchConfig, method: SearchMethod, num_classes: int,
              device: torch.device) -> SearchNetwork:
        assert cfg.ops is not None
        recompute = cfg.recompute
        if recompute == "auto":
            recompute = "full-res" if device.type == "cpu" else "off"
        return SearchNetwork(cfg.ops, method.activation, channels=cfg.channels,
                             layers=cfg.layers, num_nodes=cfg.nodes, num_classes=num_classes,
                             node_norm=method.node_norm, alpha_init=method.alpha_init,
                             recompute=recompute)  # type: ignore[arg-type]

    def arch_record(self, model: SearchNetwork) -> dict[str, Any]:
        w_normal, w_reduce = model.arch_weights()
        return {"normal": w_normal.detach().cpu().tolist(),
                "reduce": w_reduce.detach().cpu().tolist()}

    def labels(self, model: SearchNetwork) -> dict[str, Any]:
        return {"ops": list(model.ops), "edges": model.edges}

    def default_discretizer(self, method: SearchMethod) -> Discretizer:
        from nasctl.search.darts import darts_rule

        return lambda model, _probe: darts_rule(model)

    def fallback(self, choice: Discretized) -> list[str]:
        return [n for n, c in zip(CELLS, (choice.normal, choice.reduce), strict=True)
                if c.fallback]

    def choice_doc(self, choice: Discretized) -> dict[str, list[list[Any]]]:
        return {"normal": [list(e) for e in choice.normal.edges],
                "reduce": [list(e) for e in choice.reduce.edges]}

    def genotype(self, model: SearchNetwork, choice: Discretized, cfg: SearchConfig, name: str,
                 provenance: dict[str, Any]) -> Genotype:
        provenance = {**provenance, "ops": list(model.ops), "init_channels": cfg.channels,
                      "layers": cfg.layers}
        return build_genotype(choice.normal, choice.reduce, cfg.nodes, name=name,
                              provenance=provenance)

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        return {"cells": {name: [[op, u, v] for u, v, op in sorted(
            genotype.cells[name].edges(data="op"), key=lambda e: (e[1], e[0]))]
            for name in CELLS}}

    def plots(self, folder: Path, history: list[dict[str, Any]], model: SearchNetwork,
              cfg: SearchConfig, genotype: Genotype) -> tuple[dict[str, str], list[str]]:
        from nasctl.search.plots import write_plots

        return write_plots(folder, history, list(model.ops), model.edges, cfg.method, genotype)
