"""The ``mbconv-chain`` search space's genotype: one chain of MBConv layers (torch-free).

FairDARTS's second (ImageNet) search space is ProxylessNAS's MobileNetV2-like layout: a
stem conv, then a fixed chain of inverted-residual (MBConv) layers, each choosing a kernel
size and an expansion ratio, or ``skip`` (identity) where its input and output shapes
match. The genotype has one cell, ``"chain"``: a MultiDiGraph with nodes 0..L-1, one per
layer, edges i -> i+1, and per node ``op`` (``mbconv_k5_e6``, ``skip``), ``in_channels``,
``out_channels``, ``stride``, ``kernel`` and ``expansion`` (null for ``skip``). Graph
attributes ``stem_channels`` (the stride-2 3x3 stem's width, the first layer's input) and
``head_channels`` (the 1x1 conv before global pooling) complete the network.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import networkx as nx

from nasctl.errors import GenotypeError
from nasctl.genotypes.limits import MAX_NODES, brief

MBCONV_CHAIN = "mbconv-chain"
CHAIN_CELL = "chain"
SKIP = "skip"
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (1, 3, 6)  # 1 only for the fixed first layer in the search
NODE_ATTRS: tuple[str, ...] = ("op", "in_channels", "out_channels", "stride", "kernel",
                               "expansion")
GRAPH_ATTRS: tuple[str, ...] = ("stem_channels", "head_channels")
MAX_CHANNELS = 65_536  # far above any real layer; keeps a typo from allocating terabytes
_MBCONV = re.compile(r"^mbconv_k(\d+)_e(\d+)$")


def mbconv_op(kernel: int, expansion: int) -> str:
    return f"mbconv_k{kernel}_e{expansion}"


def parse_op(op: str) -> tuple[int, int] | None:
    """``"mbconv_k5_e6"`` -> (5, 6); ``"skip"`` -> None. Raises ValueError otherwise."""
    if op == SKIP:
        return None
    m = _MBCONV.match(op)
    if m is None or int(m[1]) not in KERNELS or int(m[2]) not in EXPANSIONS:
        raise ValueError(op)
    return int(m[1]), int(m[2])


def chain_ops() -> list[str]:
    return [mbconv_op(k, e) for k in KERNELS for e in EXPANSIONS] + [SKIP]


def make_chain(layers: list[dict[str, Any]], stem_channels: int,
               head_channels: int) -> nx.MultiDiGraph:
    """Build and validate a chain from per-layer dicts with ``op``, ``in_channels``,
    ``out_channels`` and ``stride`` (``kernel``/``expansion`` are derived from ``op``)."""
    graph = nx.MultiDiGraph(stem_channels=stem_channels, head_channels=head_channels)
    for i, layer in enumerate(layers):
        op = layer["op"]
        try:
            choice = parse_op(op)
        except ValueError:
            choice = None  # finalize_chain names the bad op
        graph.add_node(i, op=op, in_channels=layer["in_channels"],
                       out_channels=layer["out_channels"], stride=layer["stride"],
                       kernel=choice[0] if choice else None,
                       expansion=choice[1] if choice else None)
        if i:
            graph.add_edge(i - 1, i, key=0)
    return finalize_chain(graph)


def chain_layers(chain: nx.MultiDiGraph) -> list[dict[str, Any]]:
    """The layers in order, each a dict of the node attributes."""
    return [{k: chain.nodes[n].get(k) for k in NODE_ATTRS} for n in sorted(chain.nodes)]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finalize_chain(chain: nx.MultiDiGraph, where: str = "cell 'chain'") -> nx.MultiDiGraph:
    """Raise GenotypeError unless ``chain`` is a well-formed MBConv chain; returns it."""
    nodes = sorted(chain.nodes, key=str)
    if any(not _is_int(n) for n in nodes):
        raise GenotypeError(f"{where}: node ids must be integers, got {brief(nodes)}")
    nodes = sorted(nodes)
    if not nodes or nodes != list(range(len(nodes))):
        raise GenotypeError(f"{where}: nodes must be 0..L-1 (one per layer, at least one), "
                            f"got {brief(nodes)}")
    for attr in GRAPH_ATTRS:
        value = chain.graph.get(attr)
        if not _is_int(value) or not 1 <= value <= MAX_CHANNELS:
            raise GenotypeError(f"{where}: graph attribute {attr!r} must be a positive "
                                f"integer (at most {MAX_CHANNELS}), got {brief(value)}")
    expected = {(i, i + 1) for i in range(len(nodes) - 1)}
    found = Counter((u, v) for u, v in chain.edges())
    wrong = sorted(e for e, k in found.items() if e not in expected or k > 1)
    missing = sorted(expected - set(found))
    if wrong or missing:
        u, v = (wrong or missing)[0]
        problem = "is missing" if not wrong else (
            "is repeated" if (u, v) in expected else "is not allowed")
        raise GenotypeError(f"{where}: a chain links each layer to the next (edges i -> i+1, "
                            f"once each); edge {u} -> {v} {problem}")
    previous = chain.graph["stem_channels"]
    for n in nodes:
        _check_layer(chain.nodes[n], n, previous, where)
        previous = chain.nodes[n]["out_channels"]
    return chain


def _check_layer(attrs: dict[str, Any], n: int, c_in_expected: int, where: str) -> None:
    here = f"{where}: layer {n}"
    op = attrs.get("op")
    if not isinstance(op, str) or not op:
        raise GenotypeError(f"{here} has no op")
    try:
        choice = parse_op(op)
    except ValueError:
        known = ", ".join(chain_ops())
        raise GenotypeError(f"{here} has unknown op {brief(op)} ({known})") from None
    for key in ("in_channels", "out_channels", "stride"):
        value: Any = attrs.get(key)
        if not _is_int(value) or not 1 <= value <= MAX_CHANNELS:
            raise GenotypeError(f"{here}: {key} must be a positive integer (at most "
                                f"{MAX_CHANNELS}), got {brief(value)}")
    if attrs["stride"] not in (1, 2):
        raise GenotypeError(f"{here}: stride must be 1 or 2, got {attrs['stride']}")
    if attrs["in_channels"] != c_in_expected:
        source = "the stem" if n == 0 else f"layer {n - 1}"
        raise GenotypeError(f"{here}: in_channels is {attrs['in_channels']} but {source} "
                            f"outputs {c_in_expected} channels")
    kernel, expansion = attrs.get("kernel"), attrs.get("expansion")
    if choice is None:
        if attrs["stride"] != 1 or attrs["in_channels"] != attrs["out_channels"]:
            raise GenotypeError(
                f"{here}: skip needs stride 1 and in_channels == out_channels, got stride "
                f"{attrs['stride']}, {attrs['in_channels']} -> {attrs['out_channels']}")
        if kernel is not None or expansion is not None:
            raise GenotypeError(f"{here}: a skip layer has no kernel or expansion (use null)")
    elif (kernel, expansion) != choice:
        raise GenotypeError(f"{here}: op {op} says kernel {choice[0]}, expansion {choice[1]}, "
                            f"but the node says kernel {brief(kernel)}, expansion "
                            f"{brief(expansion)}")


def chain_to_data(chain: nx.MultiDiGraph) -> dict[str, Any]:
    """networkx node-link data: nodes in layer order with every attribute, edges i -> i+1."""
    data = nx.node_link_data(chain, edges="edges")
    data["nodes"].sort(key=lambda node: node["id"])
    data["edges"].sort(key=lambda e: e["source"])
    data["graph"] = {attr: chain.graph[attr] for attr in GRAPH_ATTRS}
    return data


CELL_KEYS: tuple[str, ...] = ("directed", "multigraph", "graph", "nodes", "edges", "links")


def _unknown(obj: dict[Any, Any], allowed: tuple[str, ...]) -> str | None:
    extra = [k for k in obj if k not in allowed]
    return f"unknown key {brief(extra[0])} (allowed: {', '.join(allowed)})" if extra else None


def chain_from_data(data: Any, where: str = "cell 'chain'") -> nx.MultiDiGraph:
    """Parse node-link data strictly (finalize_chain then checks the layers)."""
    if not isinstance(data, dict):
        raise GenotypeError(f"{where}: expected node-link data (an object)")
    if problem := _unknown(data, CELL_KEYS):
        raise GenotypeError(f"{where}: {problem}")
    for flag in ("directed", "multigraph"):
        if flag in data and data[flag] is not True:
            raise GenotypeError(f'{where}: "{flag}" must be true, got {brief(data[flag])}')
    if "edges" in data and "links" in data:
        raise GenotypeError(f'{where}: give "edges" or "links", not both')
    nodes, edges = data.get("nodes"), data.get("edges", data.get("links"))
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise GenotypeError(f'{where}: node-link data needs "nodes" and "edges" lists')
    if len(nodes) > MAX_NODES or len(edges) > MAX_NODES:
        raise GenotypeError(f"{where}: {len(nodes):,} layers and {len(edges):,} edges; the "
                            f"limit is {MAX_NODES:,} layers")
    graph_attrs = data.get("graph", {})
    if not isinstance(graph_attrs, dict):
        raise GenotypeError(f'{where}: "graph" must be an object')
    if problem := _unknown(graph_attrs, GRAPH_ATTRS):
        raise GenotypeError(f'{where}: "graph" has {problem}')
    graph = nx.MultiDiGraph(**{a: graph_attrs.get(a) for a in GRAPH_ATTRS})
    for node in nodes:
        if not isinstance(node, dict) or "id" not in node:
            raise GenotypeError(f'{where}: every node needs an "id", got {brief(node)}')
        if not _is_int(node["id"]) or node["id"] < 0:
            problem = "is negative" if _is_int(node["id"]) else "is not an integer"
            raise GenotypeError(f"{where}: node id {brief(node['id'])} {problem}")
        if node["id"] in graph:
            raise GenotypeError(f"{where}: duplicate node id {node['id']}")
        unknown = sorted(str(k) for k in node if k not in ("id", *NODE_ATTRS))
        if unknown:
            raise GenotypeError(f"{where}: layer {node['id']} has unknown attributes "
                                f"{brief(unknown)} (known: {', '.join(NODE_ATTRS)})")
        graph.add_node(node["id"], **{a: node.get(a) for a in NODE_ATTRS})
    for edge in edges:
        if not isinstance(edge, dict):
            raise GenotypeError(f"{where}: every edge must be an object, got {brief(edge)}")
        src, dst = edge.get("source"), edge.get("target")
        label = f"edge {brief(src, 20)} -> {brief(dst, 20)}"
        if problem := _unknown(edge, ("source", "target", "key")):
            raise GenotypeError(f"{where}: {label} has {problem}")
        if edge.get("key", 0) != 0 or not _is_int(edge.get("key", 0)):
            raise GenotypeError(f"{where}: {label}: key must be 0 (one edge per layer pair)")
        for end in (src, dst):
            if not _is_int(end) or end not in graph:
                raise GenotypeError(f"{where}: {label} names node {brief(end)}, "
                                    "which is not a layer")
        graph.add_edge(src, dst)
    return graph
