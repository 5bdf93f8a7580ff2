"""GraphML genotypes read back: the file `nasctl genotypes convert -o x.graphml` writes (both
cells in one graph, node ids ``cell:index``, roles input/intermediate/output, edges with
their op, slot and optional weight) becomes a genotype under the same strict schema as a
genotype file."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: N817 - the conventional name
from typing import Any

import networkx as nx

from nasctl.errors import GenotypeError
from nasctl.genotypes.genotype import Genotype
from nasctl.genotypes.io import FORMAT, VERSION, genotype_from_dict
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL


def looks_like_graphml(text: str) -> bool:
    head = text.lstrip()[:400]
    return head.startswith("<") and "graphml" in head


def genotype_from_graphml(text: str) -> Genotype:
    """Parse GraphML text; raises GenotypeError without a file name."""
    try:
        graph = nx.parse_graphml(text, force_multigraph=True)
    except (ET.ParseError, nx.NetworkXError, ValueError, KeyError) as exc:
        raise GenotypeError(f"not readable GraphML ({str(exc).splitlines()[0][:200]})") from None
    space = graph.graph.get("search_space", DARTS_CELL)
    if space != DARTS_CELL:
        raise GenotypeError(f"GraphML of a {space!r} genotype cannot be read back; convert "
                            "it to nasctl JSON instead")
    cells: dict[str, Any] = {name: {"directed": True, "multigraph": True, "graph":
                                    {"concat": []}, "nodes": [], "edges": []}
                             for name in CELL_NAMES}
    for node, data in graph.nodes(data=True):
        cell, index = _node(node, data)
        cells[cell]["nodes"].append({"id": index})
        if data.get("role") == "output":
            cells[cell]["graph"]["concat"].append(index)
    for src, dst, data in graph.edges(data=True):
        (cell, source), (other, target) = _node(src, graph.nodes[src]), _node(dst,
                                                                               graph.nodes[dst])
        if cell != other:
            raise GenotypeError(f"GraphML edge {src} -> {dst} joins two cells")
        edge = {"source": source, "target": target, "op": data.get("op")}
        for name, key in (("slot", "key"), ("weight", "weight")):
            if name in data:
                edge[key] = data[name]
        cells[cell]["edges"].append(edge)
    for cell in cells.values():
        cell["graph"]["concat"].sort()
    doc = {"format": FORMAT, "version": VERSION, "name": graph.graph.get("name") or None,
           "search_space": space, "cells": cells}
    return genotype_from_dict(doc)


def _node(node: str, data: dict[str, Any]) -> tuple[str, int]:
    cell, index = data.get("cell"), data.get("index")
    if cell not in CELL_NAMES or not isinstance(index, int) or isinstance(index, bool):
        raise GenotypeError(f"GraphML node {str(node)[:60]!r} needs a cell (normal or reduce) "
                            "and an integer index")
    return cell, index
