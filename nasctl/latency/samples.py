"""Random genotypes with skewed op mixes: the networks a latency table's glue is fitted on
and the benchmark checks predictions against (disjoint seeds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasctl.genotypes import Genotype
from nasctl.genotypes.genotype import make_cell
from nasctl.nets.mbconv import ChainLayout, chain_genotype, searchable_slots

# op mixes: weights per op name (missing ops weigh 0; "*" weighs every other op)
CELL_MIXES: dict[str, dict[str, float]] = {
    "uniform": {"*": 1.0},
    "pools": {"max_pool_3x3": 1.0, "avg_pool_3x3": 1.0},
    "skip": {"skip_connect": 1.0},
    "sep5": {"sep_conv_5x5": 1.0},
    "dil5": {"dil_conv_5x5": 1.0},
    "sep": {"sep_conv_3x3": 1.0, "sep_conv_5x5": 1.0},
    "dil": {"dil_conv_3x3": 1.0, "dil_conv_5x5": 1.0},
    "light": {"max_pool_3x3": 1.0, "avg_pool_3x3": 1.0, "skip_connect": 2.0,
              "dil_conv_3x3": 1.0},
    "heavy": {"sep_conv_5x5": 2.0, "sep_conv_3x3": 1.0, "dil_conv_5x5": 1.0},
}


def _pick(ops: Sequence[str], mix: dict[str, float], rng: np.random.Generator) -> str:
    weights = np.array([mix.get(op, mix.get("*", 0.0)) for op in ops], dtype=float)
    return str(ops[int(rng.choice(len(ops), p=weights / weights.sum()))])


def random_cell_genotype(ops: Sequence[str], mix: str, seed: int,
                         num_nodes: int = 4) -> Genotype:
    """A random DARTS-cell genotype: each node reads two earlier nodes (DARTS style), or
    for odd seeds one to three (FairDARTS style, some nodes then left out of concat)."""
    rng = np.random.default_rng(seed)
    choices = [op for op in ops if op != "none"]
    fair = seed % 2 == 1
    cells = {}
    for kind in ("normal", "reduce"):
        edges = []
        for node in range(2, 2 + num_nodes):
            k = min(node, int(rng.integers(1, 4)) if fair else 2)
            for src in rng.choice(node, size=k, replace=False):
                edges.append((_pick(choices, CELL_MIXES[mix], rng), int(src), node))
        concat = None
        if fair:
            kept = [n for n in range(2, 2 + num_nodes) if rng.random() < 0.75]
            concat = kept or [1 + num_nodes]
        cells[kind] = make_cell(edges, concat, num_nodes)
    return Genotype(cells=cells, name=f"random-{mix}-{seed}",
                    provenance={"method": "random", "seed": seed, "mix": mix})


CHAIN_MIXES: dict[str, dict[str, float]] = {
    "uniform": {"*": 1.0},
    "small": {"mbconv_k3_e3": 2.0, "skip": 2.0, "mbconv_k5_e3": 1.0},
    "large": {"mbconv_k7_e6": 2.0, "mbconv_k5_e6": 1.0},
    "skip": {"skip": 4.0, "mbconv_k3_e6": 1.0},
    "e6": {"mbconv_k3_e6": 1.0, "mbconv_k5_e6": 1.0, "mbconv_k7_e6": 1.0},
}


def random_chain_genotype(layout: ChainLayout, mix: str, seed: int,
                          kernels: Sequence[int] = (3, 5, 7),
                          expansions: Sequence[int] = (3, 6)) -> Genotype:
    """A random mbconv chain of ``layout`` (skip only where a layer may skip)."""
    from nasctl.search.mbconv import layer_choices

    rng = np.random.default_rng(seed)
    ops = [_pick(layer_choices(slot, kernels, expansions), CHAIN_MIXES[mix], rng)
           if any(CHAIN_MIXES[mix].get(op, CHAIN_MIXES[mix].get("*", 0.0)) > 0
                  for op in layer_choices(slot, kernels, expansions))
           else str(rng.choice(layer_choices(slot, kernels, expansions)))
           for slot in searchable_slots(layout)]
    return chain_genotype(layout, ops, name=f"random-{mix}-{seed}",
                          provenance={"method": "random", "seed": seed, "mix": mix})


def calibration_genotypes(deployment: object, count: int, seed: int = 10_000) -> list[Genotype]:
    """``count`` random networks of ``deployment``'s space (mixes in turn, seeds from
    ``seed``; the benchmark's own seeds stay below it)."""
    from nasctl.nets.cell_units import CellDeployment
    from nasctl.nets.chain_units import ChainDeployment

    if isinstance(deployment, CellDeployment):
        mixes = list(CELL_MIXES)
        return [random_cell_genotype(deployment.ops, mixes[i % len(mixes)], seed + i,
                                     deployment.num_nodes) for i in range(count)]
    if isinstance(deployment, ChainDeployment):
        mixes = list(CHAIN_MIXES)
        return [random_chain_genotype(deployment.layout, mixes[i % len(mixes)], seed + i,
                                      deployment.settings["kernels"],
                                      deployment.settings["expansions"])
                for i in range(count)]
    raise TypeError(f"no calibration networks for {type(deployment).__name__}")
