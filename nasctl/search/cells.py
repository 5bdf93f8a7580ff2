"""The ``cell`` search space: DARTS's normal and reduction cells (:class:`SearchNetwork`),
discretized into a ``darts-cell`` genotype."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import torch

from nasctl.search.discretize import CellChoice, build_genotype
from nasctl.search.methods import Discretized
from nasctl.search.options import option
from nasctl.search.space import ChoiceGroup, Discretizer, SearchSpace, register
from nasctl.search.supernet import Recompute, SearchNetwork, edge_list
from nasctl.settings import Rule

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment
    from nasctl.search.config import SearchConfig
    from nasctl.search.methods import SearchMethod

CELLS = ("normal", "reduce")
RECOMPUTE_CHOICES = ("auto", *get_args(Recompute))
DEPLOY_DATASETS = ("cifar10", "cifar100", "imagenet", "digits")
MAX_CHANNELS = 1024
MAX_LAYERS = 100
INPUTS_PER_NODE = 2  # the DARTS cell: each node sums two inputs


@dataclass(frozen=True)
class CellOptions:
    ops: tuple[str, ...] | None = option(None, "comma-separated candidate ops (default: the "
                                         "method's)")
    channels: int = option(16, "initial channels C of the supernet",
                           Rule(low=1, high=MAX_CHANNELS), short="-C",
                           aliases=("--init-channels", "--C"))
    layers: int = option(8, "cells of the supernet", Rule(low=3, high=MAX_LAYERS))
    nodes: int = option(4, "intermediate nodes per cell", Rule(low=1, high=16))
    recompute: str = option("auto", "recompute in backward: off (nothing), convs (the "
                            "convs and pools before each BatchNorm), full-res (whole edges "
                            "in the cells up to the first reduction, convs elsewhere), all "
                            "(whole edges everywhere); auto = convs on CPU, off on CUDA",
                            Rule(choices=RECOMPUTE_CHOICES), runtime=True)
    deploy_dataset: str | None = option(None, "the final network the costs price: its "
                                        "dataset's settings (default: cifar10, or the search "
                                        "dataset when it is cifar100 or imagenet)",
                                        Rule(choices=DEPLOY_DATASETS))
    deploy_channels: int | None = option(None, "the final network's C (default: its "
                                         "dataset's)", Rule(low=1, high=MAX_CHANNELS))
    deploy_layers: int | None = option(None, "the final network's cells (default: its "
                                       "dataset's)", Rule(low=3, high=MAX_LAYERS))


def deploy_dataset(search_dataset: str, given: str | None) -> str:
    """The dataset whose final-network settings a search prices by default."""
    if given is not None:
        return given
    return search_dataset if search_dataset in ("cifar100", "imagenet") else "cifar10"


@register
class CellSpace(SearchSpace):
    name = "cell"
    help = "DARTS cells"
    Options = CellOptions

    def resolved_options(self, method: SearchMethod) -> CellOptions:
        ops = self.config.ops if self.config.ops is not None else method.default_ops
        return replace(self.config, ops=tuple(ops))

    def problems(self, cfg: SearchConfig) -> list[str]:
        from nasctl.nets.ops import OPS

        ops = self.config.ops
        if ops is None:
            return []
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            return [f"unknown ops {', '.join(map(repr, unknown))} (known: {', '.join(OPS)})"]
        twice = sorted(op for op, n in Counter(ops).items() if n > 1)
        if twice:
            return [f"ops names {', '.join(twice)} more than once"]
        if not [op for op in ops if op != "none"]:
            return ["ops must name at least one op other than none"]
        return []

    def build(self, cfg: SearchConfig, method: SearchMethod, num_classes: int,
              device: torch.device) -> SearchNetwork:
        o = self.resolved_options(method)
        recompute = o.recompute
        if recompute == "auto":
            recompute = "convs" if device.type == "cpu" else "off"
        assert o.ops is not None
        return SearchNetwork(o.ops, method.activation, channels=o.channels,
                             layers=o.layers, num_nodes=o.nodes, num_classes=num_classes,
                             node_norm=method.node_norm, alpha_init=method.alpha_init,
                             recompute=recompute)  # type: ignore[arg-type]

    def groups(self, model: SearchNetwork) -> list[ChoiceGroup]:
        """One group per edge; a node's in-edges share a bucket of which the rules keep two
        (DARTS's top-2, FairDARTS's sparse rule at most two)."""
        ops = tuple(model.ops)
        return [ChoiceGroup(f"{cell} {src}->{dst}", ops, w[e], bucket=f"{cell} {dst}",
                            keep=INPUTS_PER_NODE)
                for cell, w in zip(CELLS, model.arch_weights(), strict=True)
                for e, (src, dst) in enumerate(model.edges)]

    def deployment(self, cfg: SearchConfig) -> Deployment:
        from nasctl.nets.cell_units import CellDeployment

        o = self.config
        assert o.ops is not None, "resolved settings"
        return CellDeployment(o.ops, deploy_dataset(cfg.dataset, o.deploy_dataset),
                              o.deploy_channels, o.deploy_layers, o.nodes)

    def kept(self, choice: Discretized) -> list[list[int]]:
        ops, edges = list(self.config.ops), edge_list(self.config.nodes)
        rows: list[list[int]] = [[] for _ in range(2 * len(edges))]
        for c, cell in enumerate((choice.normal, choice.reduce)):
            for op, src, dst in cell.edges:
                rows[c * len(edges) + edges.index((src, dst))].append(ops.index(op))
        return rows

    def with_kept(self, choice: Discretized | None, kept: list[list[int]],
                  model: SearchNetwork) -> Discretized:
        edges, cells = model.edges, []
        old_cells = (choice.normal, choice.reduce) if choice else (None, None)
        for c, (old, w) in enumerate(zip(old_cells, model.arch_weights(), strict=True)):
            w = w.detach()
            chosen = [(model.ops[k], src, dst) for e, (src, dst) in enumerate(edges)
                      for k in kept[c * len(edges) + e]]
            weights = {(op, s, d): float(w[edges.index((s, d)), model.ops.index(op)])
                       for op, s, d in chosen}
            cells.append(CellChoice(chosen, weights, bool(old and old.fallback)))
        if choice is None:
            return Discretized(cells[0], cells[1])
        return Discretized(cells[0], cells[1], dict(choice.settings), list(choice.notes))

    def cheapest(self, prices: list[list[float]]) -> list[list[int]]:
        """Per node of each cell, the one cheapest (in-edge, op) that is not ``none``."""
        ops, edges = list(self.config.ops), edge_list(self.config.nodes)
        kept: list[list[int]] = [[] for _ in prices]
        for c in range(len(CELLS)):
            for dst in sorted({d for _s, d in edges}):
                rows = [c * len(edges) + e for e, (_s, d) in enumerate(edges) if d == dst]
                _price, g, k = min((prices[g][k], g, k) for g in rows
                                   for k, op in enumerate(ops) if op != "none")
                kept[g].append(k)
        return kept

    def arch_record(self, model: SearchNetwork) -> dict[str, Any]:
        """Per cell, each edge group's weights (the rows the plots draw)."""
        record: dict[str, Any] = {cell: [] for cell in CELLS}
        for group in self.groups(model):
            record[group.label.split()[0]].append(group.weights.detach().cpu().tolist())
        return record

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
        o = self.config
        provenance = {**provenance, "ops": list(model.ops), "init_channels": o.channels,
                      "layers": o.layers}
        return build_genotype(choice.normal, choice.reduce, o.nodes, name=name,
                              provenance=provenance)

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        return {"cells": {name: [[op, u, v] for u, v, op in sorted(
            genotype.cells[name].edges(data="op"), key=lambda e: (e[1], e[0]))]
            for name in CELLS}}

    def plots(self, folder: Path, history: list[dict[str, Any]], model: SearchNetwork,
              cfg: SearchConfig, genotype: Genotype) -> tuple[dict[str, str], list[str]]:
        from nasctl.search.plots import write_plots

        return write_plots(folder, history, list(model.ops), model.edges, cfg.method, genotype)
