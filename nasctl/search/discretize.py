"""Discretisers: turn per-edge op scores into genotype cells.

Scores are ``[num_edges, num_ops]`` arrays in the supernet's edge order (see
:func:`nasctl.search.supernet.edge_list`). Every function returns ``(op, from, to)``
triples for :func:`nasctl.genotypes.genotype.make_cell`, which prunes dead nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasctl.errors import GenotypeError, NasctlError
from nasctl.genotypes import Genotype
from nasctl.genotypes.genotype import make_cell

Edge = tuple[str, int, int]
NUM_INPUTS = 2


def _node_edges(num_nodes: int) -> list[list[int]]:
    """Per intermediate node, the edge indices that end in it."""
    rows, e = [], 0
    for i in range(num_nodes):
        rows.append(list(range(e, e + i + NUM_INPUTS)))
        e += i + NUM_INPUTS
    return rows


def _sources(num_nodes: int) -> list[int]:
    return [j for i in range(num_nodes) for j in range(i + NUM_INPUTS)]


def top_edges(scores: np.ndarray, ops: Sequence[str], num_nodes: int, k: int = 2,
              exclude: Sequence[str] = ("none",)) -> list[Edge]:
    """The DARTS rule: per node the ``k`` in-edges whose best allowed op scores highest,
    each with that op. As in the official ``genotype()``, a node's edges are listed
    strongest first and ties go to the earlier edge/op, so a search's genotype lists its
    ops in the order the official code would (the order its checkpoint keys follow)."""
    allowed = np.array([op not in exclude for op in ops])
    masked = np.where(allowed[None, :], scores, -np.inf)
    src = _sources(num_nodes)
    edges: list[Edge] = []
    for i, rows in enumerate(_node_edges(num_nodes)):
        best = [(float(masked[e].max()), e) for e in rows]
        for _score, e in sorted(best, key=lambda t: (-t[0], t[1]))[:k]:
            edges.append((ops[int(np.argmax(masked[e]))], src[e], i + NUM_INPUTS))
    return edges


def sparse_threshold(weights: np.ndarray, ops: Sequence[str], num_nodes: int,
                     threshold: float, k: int = 2) -> list[Edge]:
    """FairDARTS ``sparse``: per node the top-``k`` edges by their strongest op; each keeps
    its argmax op only if that weight reaches ``threshold`` (a node may get 0, 1 or 2)."""
    kept = []
    for op, src, dst in top_edges(weights, ops, num_nodes, k, exclude=("none",)):
        e = _edge_index(src, dst)
        if weights[e, list(ops).index(op)] >= threshold:
            kept.append((op, src, dst))
    return kept


def edge_threshold(weights: np.ndarray, ops: Sequence[str], num_nodes: int,
                   threshold: float, k: int = 2) -> list[Edge]:
    """FairDARTS ``edge``, as the official ``parse()`` does it: on every edge the ``k``
    strongest ops, each kept only if its weight reaches ``threshold``. A node may keep many
    in-edges, an edge at most ``k`` ops. Like ``parse()``, which sorts an edge's weights in
    ascending order and takes the last ``k``, ties go to the *later* op (the weights the
    official repository publishes have one, and sigmoids saturated at 1.0 tie too) and an
    edge's ops are listed weakest first, so the genotype, and the FairDARTS checkpoint keys
    that follow its order, are the official ones."""
    if k < 1:
        raise NasctlError(f"--edge-k must be at least 1, got {k}")
    allowed = [j for j, op in enumerate(ops) if op != "none"]
    src = _sources(num_nodes)
    edges: list[Edge] = []
    for i, rows in enumerate(_node_edges(num_nodes)):
        for e in rows:
            for j in sorted(allowed, key=lambda j, e=e: weights[e, j])[-k:]:  # stable sort
                if weights[e, j] >= threshold:
                    edges.append((ops[j], src[e], i + NUM_INPUTS))
    return edges


def _edge_index(src: int, dst: int) -> int:
    i = dst - NUM_INPUTS
    return i * (i + 3) // 2 + src  # sum_{m<i} (m + 2) = i(i+3)/2


@dataclass
class CellChoice:
    """One cell's discretized edges plus what the discretiser had to do to get them."""

    edges: list[Edge]
    weights: dict[tuple[str, int, int], float] = field(default_factory=dict)
    fallback: bool = False


def strongest_per_node(weights: np.ndarray, ops: Sequence[str], num_nodes: int) -> list[Edge]:
    """One input per node: its single strongest (edge, op). Every node stays live."""
    return top_edges(weights, ops, num_nodes, k=1, exclude=("none",))


def choose_with_fallback(edges: list[Edge], weights: np.ndarray, ops: Sequence[str],
                         num_nodes: int) -> CellChoice:
    """Keep ``edges`` unless they leave the cell with no live node; then fall back to the
    strongest op per node (recorded, so provenance says so)."""
    fallback = not _has_live_node(edges, num_nodes)
    if fallback:
        edges = strongest_per_node(weights, ops, num_nodes)
    index = {op: k for k, op in enumerate(ops)}
    w = {(op, s, d): float(weights[_edge_index(s, d), index[op]]) for op, s, d in edges}
    return CellChoice(edges, w, fallback)


def _has_live_node(edges: list[Edge], num_nodes: int) -> bool:
    live = {0, 1}
    for _op, src, dst in sorted(edges, key=lambda t: t[2]):
        if src in live:
            live.add(dst)
    return len(live) > NUM_INPUTS


def build_genotype(normal: CellChoice, reduce: CellChoice, num_nodes: int,
                   name: str | None = None, provenance: dict[str, Any] | None = None) -> Genotype:
    """A Genotype from two cell choices; each kept edge carries its score as ``weight``."""
    cells = {}
    for cell_name, choice in (("normal", normal), ("reduce", reduce)):
        try:
            cell = make_cell(choice.edges, None, num_nodes)
        except GenotypeError as exc:
            raise GenotypeError(f"discretized {cell_name} cell: {exc}") from None
        for src, dst, _key, data in cell.edges(keys=True, data=True):
            weight = choice.weights.get((data["op"], src, dst))
            if weight is not None:
                data["weight"] = round(weight, 6)
        cells[cell_name] = cell
    return Genotype(cells, name=name, provenance=dict(provenance or {}))
