"""The genotype: a normal and a reduce cell, each a networkx MultiDiGraph.

Nodes 0 and 1 are the cell inputs, 2..N+1 the intermediate nodes. An edge u -> v with
attribute ``op`` applies that op to node u and adds it into node v; its multigraph key is
the edge's input *slot* in v (0, 1, ...), so the order of a node's inputs (which the DARTS
code uses to name its modules) survives every conversion. The graph attribute ``concat``
lists the nodes concatenated into the cell output.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nasctl.errors import GenotypeError
from nasctl.genotypes.chain import CHAIN_CELL, MBCONV_CHAIN, chain_to_data, finalize_chain
from nasctl.genotypes.limits import MAX_EDGES, MAX_NODES, brief
from nasctl.genotypes.spaces import CELL_NAMES, CELL_OPS, DARTS_CELL, NUM_INPUTS


def make_cell(
    edges: list[tuple[str, int, int]], concat: list[int] | None, num_nodes: int
) -> nx.MultiDiGraph:
    """Build a cell from ``(op, from_node, to_node)`` triples, in each node's input order.

    ``num_nodes`` counts the intermediate nodes; ``concat=None`` means every live one.
    The result is validated and dead nodes are pruned.
    """
    if num_nodes + NUM_INPUTS > MAX_NODES or len(edges) > MAX_EDGES:
        raise GenotypeError(
            f"{num_nodes + NUM_INPUTS:,} nodes and {len(edges):,} edges; the limits are "
            f"{MAX_NODES:,} and {MAX_EDGES:,}"
        )
    graph = nx.MultiDiGraph(concat=list(concat) if concat is not None else None)
    graph.add_nodes_from(range(NUM_INPUTS + num_nodes))
    slots: dict[int, int] = {}
    for op, src, dst in edges:
        slot = slots.get(dst, 0)
        slots[dst] = slot + 1
        graph.add_edge(src, dst, key=slot, op=op)
    return finalize_cell(graph)


def cell_inputs(cell: nx.MultiDiGraph, node: int) -> list[tuple[int, str]]:
    """The ``(from_node, op)`` inputs of ``node`` in slot order."""
    edges = sorted(cell.in_edges(node, keys=True, data="op"), key=lambda e: e[2])
    return [(src, op) for src, _dst, _key, op in edges]


def intermediate_nodes(cell: nx.MultiDiGraph) -> list[int]:
    return sorted(n for n in cell.nodes if n >= NUM_INPUTS)


def live_nodes(cell: nx.MultiDiGraph) -> list[int]:
    return [n for n in intermediate_nodes(cell) if cell.in_degree(n) > 0]


def check_cell(cell: nx.MultiDiGraph, where: str) -> None:
    """Raise GenotypeError if ``cell`` is not a well-formed DARTS cell (linear time)."""
    if any(not isinstance(n, int) or isinstance(n, bool) for n in cell.nodes):
        raise GenotypeError(f"{where}: node ids must be integers, got {brief(list(cell.nodes))}")
    if cell.number_of_nodes() > MAX_NODES or cell.number_of_edges() > MAX_EDGES:
        raise GenotypeError(
            f"{where}: {cell.number_of_nodes():,} nodes and {cell.number_of_edges():,} edges; "
            f"the limits are {MAX_NODES:,} and {MAX_EDGES:,}"
        )
    nodes = sorted(cell.nodes)
    if nodes != list(range(len(nodes))) or len(nodes) < NUM_INPUTS + 1:
        raise GenotypeError(
            f"{where}: nodes must be 0..N+1 (0 and 1 the inputs, at least one intermediate "
            f"node), got {brief(nodes)}"
        )
    if not nx.is_directed_acyclic_graph(cell):
        cycle = " -> ".join(str(u) for u, _v, *_ in nx.find_cycle(cell))
        raise GenotypeError(f"{where}: the cell has a cycle through nodes {brief(cycle, 80)}")
    for src, dst, key, data in cell.edges(keys=True, data=True):
        op = data.get("op")
        if op is None or op == "":
            raise GenotypeError(f"{where}: edge {src} -> {dst} has no op")
        if not isinstance(op, str) or op not in CELL_OPS:
            known = ", ".join(sorted(CELL_OPS))
            raise GenotypeError(
                f"{where}: edge {src} -> {dst} has unknown op {brief(op)} ({known})"
            )
        if dst < NUM_INPUTS:
            raise GenotypeError(f"{where}: edge {src} -> {dst} points into input node {dst}")
        if src >= dst:
            raise GenotypeError(
                f"{where}: edge {src} -> {dst} reads a later node; a node can only read "
                "earlier nodes"
            )
        weight = data.get("weight")
        if weight is not None and not (
            isinstance(weight, int | float) and not isinstance(weight, bool)
            and math.isfinite(weight)
        ):
            raise GenotypeError(
                f"{where}: edge {src} -> {dst} weight must be a finite number, got {brief(weight)}"
            )
        if not isinstance(key, int) or isinstance(key, bool) or key < 0:
            raise GenotypeError(
                f"{where}: edge {src} -> {dst} key must be a non-negative integer slot"
            )
    concat = cell.graph.get("concat")
    if concat is not None:
        if not isinstance(concat, list) or not concat:
            raise GenotypeError(f"{where}: concat must be a non-empty list of node ids")
        for n in concat:
            if not isinstance(n, int) or isinstance(n, bool) or n not in cell:
                raise GenotypeError(
                    f"{where}: concat names node {brief(n)}, which is not in the cell"
                )
            if n < NUM_INPUTS:
                raise GenotypeError(f"{where}: concat names input node {n}")
        if len(set(concat)) != len(concat):
            raise GenotypeError(f"{where}: concat lists a node twice: {brief(concat)}")


def prune_dead_nodes(cell: nx.MultiDiGraph) -> None:
    """FairDARTS semantics, in place: an intermediate node with no input is dead; its
    out-edges are dropped and it leaves ``concat``. Transitive, since a node fed only by
    dead nodes is dead too (a worklist: linear in the cell's size). Dead nodes stay as
    isolated nodes so the cell keeps its node count."""
    in_degree = dict(cell.in_degree())
    dead = [n for n in intermediate_nodes(cell) if in_degree[n] == 0]
    touched: set[int] = set()
    while dead:
        node = dead.pop()
        doomed = list(cell.out_edges(node, keys=True))
        cell.remove_edges_from(doomed)
        for _u, v, _k in doomed:
            touched.add(v)
            in_degree[v] -= 1
            if in_degree[v] == 0:
                dead.append(v)
    for node in touched:
        _renumber_slots(cell, node)
    live = set(live_nodes(cell))
    concat = cell.graph.get("concat")
    cell.graph["concat"] = (
        sorted(live) if concat is None else [n for n in concat if n in live]
    )


def _renumber_slots(cell: nx.MultiDiGraph, node: int) -> None:
    edges = sorted(cell.in_edges(node, keys=True, data=True), key=lambda e: e[2])
    if all(k == slot for slot, (_u, _v, k, _d) in enumerate(edges)):
        return
    cell.remove_edges_from([(u, v, k) for u, v, k, _d in edges])
    for slot, (u, v, _k, data) in enumerate(edges):
        cell.add_edge(u, v, key=slot, **data)


def finalize_cell(cell: nx.MultiDiGraph, where: str = "cell") -> nx.MultiDiGraph:
    """Validate, prune dead nodes and renumber slots to 0..k-1; returns the same graph."""
    check_cell(cell, where)
    for node in intermediate_nodes(cell):
        _renumber_slots(cell, node)
    prune_dead_nodes(cell)
    if not cell.graph["concat"]:
        raise GenotypeError(f"{where}: no intermediate node has an input; the cell is empty")
    return cell


def cell_to_data(cell: nx.MultiDiGraph) -> dict[str, Any]:
    """networkx node-link data, edges ordered by (target node, slot)."""
    data = nx.node_link_data(cell, edges="edges")
    data["edges"].sort(key=lambda e: (e["target"], e["key"]))
    data["graph"] = {"concat": list(cell.graph["concat"])}
    return data


@dataclass(frozen=True)
class SpaceSpec:
    """What a search space's genotype holds: its cells, how one is validated (and
    normalised) in place, and how one becomes node-link data."""

    cells: tuple[str, ...]
    finalize: Callable[[nx.MultiDiGraph, str], nx.MultiDiGraph]
    to_data: Callable[[nx.MultiDiGraph], dict[str, Any]]


SPACES: dict[str, SpaceSpec] = {
    DARTS_CELL: SpaceSpec(CELL_NAMES, finalize_cell, cell_to_data),
    MBCONV_CHAIN: SpaceSpec((CHAIN_CELL,), finalize_chain, chain_to_data),
}


def space_spec(search_space: str) -> SpaceSpec:
    try:
        return SPACES[search_space]
    except KeyError:
        raise GenotypeError(f"unsupported search space {search_space!r}") from None


@dataclass(eq=False)
class Genotype:
    """A discretized architecture: named cells plus metadata (see docs/genotype-format.md)."""

    cells: dict[str, nx.MultiDiGraph]
    name: str | None = None
    search_space: str = DARTS_CELL
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = space_spec(self.search_space)
        for cell_name in spec.cells:
            if cell_name not in self.cells:
                raise GenotypeError(f"missing cell {cell_name!r}")
        extra = set(self.cells) - set(spec.cells)
        if extra:
            raise GenotypeError(
                f"unknown cells {sorted(extra)}; expected {' and '.join(spec.cells)}"
            )
        for cell_name in spec.cells:
            spec.finalize(self.cells[cell_name], f"cell {cell_name!r}")

    @property
    def normal(self) -> nx.MultiDiGraph:
        return self.cells["normal"]

    @property
    def reduce(self) -> nx.MultiDiGraph:
        return self.cells["reduce"]

    def cells_data(self) -> dict[str, Any]:
        spec = space_spec(self.search_space)
        return {name: spec.to_data(self.cells[name]) for name in spec.cells}

    def content_hash(self) -> str:
        """sha256 of the cells alone (not the name or provenance): same architecture, same hash."""
        text = json.dumps(self.cells_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return (
            self.name == other.name
            and self.search_space == other.search_space
            and self.provenance == other.provenance
            and self.cells_data() == other.cells_data()
        )

    def __hash__(self) -> int:
        return hash(self.content_hash())

    # Conversions live in nasctl.genotypes.convert; these are the Contract 2 shortcuts.
    def to_darts(self) -> Any:
        from nasctl.genotypes.convert import to_darts

        return to_darts(self)

    def to_fairdarts(self) -> Any:
        from nasctl.genotypes.convert import to_fairdarts

        return to_fairdarts(self)

    def to_nni(self) -> dict[str, Any]:
        from nasctl.genotypes.convert import to_nni

        return to_nni(self)
