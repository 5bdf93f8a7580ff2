"""Reading and writing genotype files (Contract 1) and GraphML export.

Every problem with a file is reported as one GenotypeError naming the file.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx

from nasctl import __version__, atomic
from nasctl.errors import GenotypeError
from nasctl.genotypes.chain import MBCONV_CHAIN, chain_from_data
from nasctl.genotypes.genotype import Genotype, space_spec
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL

FORMAT = "nasctl-genotype"
VERSION = 1


def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": genotype.name,
        "search_space": genotype.search_space,
        "cells": genotype.cells_data(),
        "provenance": genotype.provenance,
    }


def genotype_from_dict(doc: Any) -> Genotype:
    """Parse a decoded genotype document; raises GenotypeError without a file name."""
    if not isinstance(doc, dict):
        raise GenotypeError(f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise GenotypeError(f"not a nasctl genotype (\"format\" is {doc.get('format')!r})")
    version = doc.get("version")
    if version != VERSION:
        raise GenotypeError(
            f"unsupported genotype version {version!r}; this nasctl reads version {VERSION}"
        )
    space = doc.get("search_space", DARTS_CELL)
    if not isinstance(space, str):
        raise GenotypeError(f"unsupported search space {space!r}")
    spec = space_spec(space)
    cells = doc.get("cells")
    if not isinstance(cells, dict):
        raise GenotypeError('missing "cells" object')
    for cell_name in spec.cells:
        if cell_name not in cells:
            raise GenotypeError(f"missing cell {cell_name!r}")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise GenotypeError('"name" must be a string')
    provenance = doc.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise GenotypeError('"provenance" must be an object')
    read_cell = _READERS[space]
    graphs = {cell_name: read_cell(cells[cell_name], cell_name) for cell_name in cells}
    return Genotype(cells=graphs, name=name, search_space=space, provenance=provenance)


def _cell_from_data(data: Any, cell_name: str) -> nx.MultiDiGraph:
    where = f"cell {cell_name!r}"
    if not isinstance(data, dict):
        raise GenotypeError(f"{where}: expected node-link data (an object)")
    nodes, edges = data.get("nodes"), data.get("edges", data.get("links"))
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise GenotypeError(f'{where}: node-link data needs "nodes" and "edges" lists')
    ids: list[Any] = []
    for node in nodes:
        if not isinstance(node, dict) or "id" not in node:
            raise GenotypeError(f'{where}: every node needs an "id"')
        if not isinstance(node["id"], int) or isinstance(node["id"], bool):
            raise GenotypeError(f"{where}: node id {node['id']!r} is not an integer")
        if node["id"] in ids:
            raise GenotypeError(f"{where}: duplicate node id {node['id']}")
        ids.append(node["id"])
    graph = nx.MultiDiGraph(concat=(data.get("graph") or {}).get("concat"))
    graph.add_nodes_from(sorted(ids))
    next_slot: dict[int, int] = {}
    for edge in edges:
        if not isinstance(edge, dict):
            raise GenotypeError(f"{where}: every edge must be an object")
        src, dst = edge.get("source"), edge.get("target")
        for end in (src, dst):
            if end not in ids or isinstance(end, bool):
                raise GenotypeError(
                    f"{where}: edge {src} -> {dst} names node {end!r}, which is out of range "
                    f"(nodes {min(ids, default=0)}..{max(ids, default=0)})"
                )
        if "op" not in edge:
            raise GenotypeError(f"{where}: edge {src} -> {dst} has no op")
        attrs = {k: v for k, v in edge.items() if k not in ("source", "target", "key")}
        # Slots order a node's inputs; files without keys use the order they list edges in.
        key = edge.get("key", next_slot.get(dst, 0))
        if not isinstance(key, int) or isinstance(key, bool):
            raise GenotypeError(f"{where}: edge {src} -> {dst} key must be an integer slot")
        if any(k == key for *_e, k in graph.in_edges(dst, keys=True)):
            raise GenotypeError(f"{where}: node {dst} has two inputs in slot {key}")
        next_slot[dst] = max(next_slot.get(dst, 0), key + 1)
        graph.add_edge(src, dst, key=key, **attrs)
    return graph


def _chain_from_data(data: Any, cell_name: str) -> nx.MultiDiGraph:
    return chain_from_data(data, f"cell {cell_name!r}")


_READERS = {DARTS_CELL: _cell_from_data, MBCONV_CHAIN: _chain_from_data}


def read_genotype(path: str | os.PathLike[str]) -> Genotype:
    """Read a ``*.genotype.json`` file; every problem is one GenotypeError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise GenotypeError(f"{p}: is a directory, expected a genotype JSON file")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise GenotypeError(f"{p}: no such file") from None
    except OSError as exc:
        raise GenotypeError(f"{p}: cannot read ({exc.strerror})") from None
    if not raw.strip():
        raise GenotypeError(f"{p}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"{p}: not a text file (binary data?); expected JSON") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenotypeError(
            f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    try:
        return genotype_from_dict(doc)
    except GenotypeError as exc:
        raise GenotypeError(f"{p}: {exc}") from None


def write_genotype(genotype: Genotype, path: str | os.PathLike[str]) -> Path:
    """Write atomically; stamps nasctl_version and created into provenance when absent."""
    doc = genotype_to_dict(genotype)
    stamps = {
        "nasctl_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    doc["provenance"] = {**stamps, **genotype.provenance}
    return atomic.write_json(path, doc)


def write_graphml(genotype: Genotype, path: str | os.PathLike[str]) -> Path:
    """One GraphML file holding both cells, node ids prefixed with the cell name."""
    merged = nx.MultiDiGraph(name=genotype.name or "", search_space=genotype.search_space)
    if genotype.search_space == MBCONV_CHAIN:
        _merge_chain(merged, genotype)
        return atomic.write_text(path, "\n".join(nx.generate_graphml(merged)) + "\n")
    for cell_name in CELL_NAMES:
        cell = genotype.cells[cell_name]
        concat = set(cell.graph["concat"])
        for node in cell.nodes:
            role = "input" if node < 2 else ("output" if node in concat else "intermediate")
            merged.add_node(f"{cell_name}:{node}", cell=cell_name, index=node, role=role)
        for src, dst, key, data in cell.edges(keys=True, data=True):
            merged.add_edge(f"{cell_name}:{src}", f"{cell_name}:{dst}", key=key, slot=key, **data)
    text = "\n".join(nx.generate_graphml(merged)) + "\n"
    return atomic.write_text(path, text)


def _merge_chain(merged: nx.MultiDiGraph, genotype: Genotype) -> None:
    """GraphML has no null: a skip layer's kernel and expansion are left out."""
    for cell_name, cell in genotype.cells.items():
        merged.graph.update(cell.graph)
        for node, data in cell.nodes(data=True):
            attrs = {k: v for k, v in data.items() if v is not None}
            merged.add_node(f"{cell_name}:{node}", cell=cell_name, index=node, **attrs)
        for src, dst in cell.edges():
            merged.add_edge(f"{cell_name}:{src}", f"{cell_name}:{dst}")
