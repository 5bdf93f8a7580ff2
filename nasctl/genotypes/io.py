"""Reading and writing genotype files (Contract 1) and GraphML export.

The reader is one strict schema (docs/genotype-format.md): unknown keys, values of the
wrong JSON type (``true`` for a number, ``2.0`` for a node id), non-finite numbers,
duplicate keys, deep nesting and absurd sizes are all refused. Every problem with a file
is reported as one GenotypeError naming the file. Reading is linear in the file's size.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import networkx as nx

from nasctl import __version__, atomic
from nasctl.errors import GenotypeError
from nasctl.genotypes.chain import CELL_KEYS, MBCONV_CHAIN, chain_from_data
from nasctl.genotypes.genotype import Genotype, space_spec
from nasctl.genotypes.limits import (
    MAX_DEPTH,
    MAX_EDGES,
    MAX_FILE_BYTES,
    MAX_INT_DIGITS,
    MAX_NAME_CHARS,
    MAX_NODES,
    brief,
)
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL

FORMAT = "nasctl-genotype"
VERSION = 1
TOP_KEYS = ("format", "version", "name", "search_space", "cells", "provenance")
EDGE_KEYS = ("source", "target", "key", "op", "weight")


def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": genotype.name,
        "search_space": genotype.search_space,
        "cells": genotype.cells_data(),
        "provenance": genotype.provenance,
    }


def dumps_genotype(genotype: Genotype, provenance: dict[str, Any] | None = None) -> str:
    """The genotype file's text: strict JSON (a NaN or infinity anywhere is refused)."""
    doc = genotype_to_dict(genotype)
    if provenance is not None:
        doc["provenance"] = provenance
    return dumps_strict(doc)


def dumps_strict(obj: Any) -> str:
    """``json.dumps`` that refuses what is not JSON (NaN, infinity, non-string keys...)."""
    try:
        return json.dumps(obj, indent=2, allow_nan=False)
    except ValueError as exc:  # allow_nan=False
        raise GenotypeError(f"cannot write valid JSON: {exc}") from None
    except (TypeError, RecursionError) as exc:
        raise GenotypeError(f"cannot write valid JSON: {brief(str(exc), 120)}") from None


# --- the schema -----------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_keys(obj: dict[Any, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise GenotypeError(
            f"{where}unknown key {brief(unknown[0])} (allowed: {', '.join(allowed)})"
        )


def _check_json_value(value: Any, where: str) -> None:
    """Iteratively: only JSON values (finite numbers, string keys), nested <= MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, bool | str) or _is_int(item):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise GenotypeError(f"{where} holds {item!r}, which is not a JSON number")
            continue
        if depth > MAX_DEPTH:
            raise GenotypeError(f"{where} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise GenotypeError(f"{where} has a non-string key {brief(key)}")
                stack.append((sub, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, depth + 1) for sub in item)
        else:
            raise GenotypeError(f"{where} holds a {type(item).__name__}, which is not JSON")


def genotype_from_dict(doc: Any) -> Genotype:
    """Parse a decoded genotype document; raises GenotypeError without a file name."""
    if not isinstance(doc, dict):
        raise GenotypeError(f"expected a JSON object, got {_json_type(doc)}")
    if doc.get("format") != FORMAT:
        raise GenotypeError(f'not a nasctl genotype ("format" is {brief(doc.get("format"))})')
    _check_keys(doc, TOP_KEYS, "")
    version = doc.get("version")
    if not _is_int(version) or version != VERSION:
        raise GenotypeError(
            f"unsupported genotype version {brief(version)}; this nasctl reads version "
            f"{VERSION} (an integer)"
        )
    space = doc.get("search_space", DARTS_CELL)
    if not isinstance(space, str):
        raise GenotypeError(f'"search_space" must be a string, got {brief(space)}')
    spec = space_spec(space)
    cells = doc.get("cells")
    if not isinstance(cells, dict):
        raise GenotypeError('missing "cells" object')
    for cell_name in spec.cells:
        if cell_name not in cells:
            raise GenotypeError(f"missing cell {cell_name!r}")
    extra = [c for c in cells if c not in spec.cells]
    if extra:
        raise GenotypeError(
            f"unknown cells {brief(sorted(map(str, extra)))}; expected {' and '.join(spec.cells)}"
        )
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        raise GenotypeError(f'"name" must be a string, got {brief(name)}')
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise GenotypeError(f'"name" is {len(name)} characters long; the limit is '
                            f"{MAX_NAME_CHARS}")
    provenance = doc.get("provenance")
    if provenance is None:
        provenance = {}
    if not isinstance(provenance, dict):
        raise GenotypeError(f'"provenance" must be an object, got {brief(provenance)}')
    _check_json_value(provenance, '"provenance"')
    read_cell = _READERS[space]
    graphs = {cell_name: read_cell(cells[cell_name], cell_name) for cell_name in spec.cells}
    return Genotype(cells=graphs, name=name, search_space=space, provenance=dict(provenance))


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _cell_from_data(data: Any, cell_name: str) -> nx.MultiDiGraph:
    """Node-link data -> MultiDiGraph, in one pass (finalize_cell checks the wiring)."""
    where = f"cell {cell_name!r}"
    if not isinstance(data, dict):
        raise GenotypeError(f"{where}: expected node-link data (an object), got "
                            f"{_json_type(data)}")
    _check_keys(data, CELL_KEYS, f"{where}: ")
    for flag in ("directed", "multigraph"):
        if flag in data and data[flag] is not True:
            raise GenotypeError(f'{where}: "{flag}" must be true (a cell is a MultiDiGraph), '
                                f"got {brief(data[flag])}")
    if "edges" in data and "links" in data:
        raise GenotypeError(f'{where}: give "edges" or "links", not both')
    nodes, edges = data.get("nodes"), data.get("edges", data.get("links"))
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise GenotypeError(f'{where}: node-link data needs "nodes" and "edges" lists')
    if len(nodes) > MAX_NODES:
        raise GenotypeError(f"{where}: {len(nodes):,} nodes; the limit is {MAX_NODES:,}")
    if len(edges) > MAX_EDGES:
        raise GenotypeError(f"{where}: {len(edges):,} edges; the limit is {MAX_EDGES:,}")
    graph_attrs = data.get("graph", {})
    if not isinstance(graph_attrs, dict):
        raise GenotypeError(f'{where}: "graph" must be an object, got {brief(graph_attrs)}')
    _check_keys(graph_attrs, ("concat",), f'{where}: "graph" has ')
    concat = graph_attrs.get("concat")
    if concat is not None and not isinstance(concat, list):
        raise GenotypeError(f"{where}: concat must be a list of node ids, got {brief(concat)}")
    ids: set[int] = set()
    for node in nodes:
        if not isinstance(node, dict) or "id" not in node:
            raise GenotypeError(f'{where}: every node needs an "id", got {brief(node)}')
        _check_keys(node, ("id",), f"{where}: node {brief(node['id'])} has ")
        nid = node["id"]
        if not _is_int(nid) or nid < 0:
            problem = "is negative" if _is_int(nid) else "is not an integer"
            raise GenotypeError(f"{where}: node id {brief(nid)} {problem}")
        if nid in ids:
            raise GenotypeError(f"{where}: duplicate node id {nid}")
        ids.add(nid)
    graph = nx.MultiDiGraph(concat=concat)
    graph.add_nodes_from(sorted(ids))
    low, high = min(ids, default=0), max(ids, default=0)
    next_slot: dict[int, int] = {}
    used: set[tuple[int, int]] = set()
    for edge in edges:
        if not isinstance(edge, dict):
            raise GenotypeError(f"{where}: every edge must be an object, got {brief(edge)}")
        src: Any = edge.get("source")
        dst: Any = edge.get("target")
        label = f"edge {brief(src, 20)} -> {brief(dst, 20)}"
        _check_keys(edge, EDGE_KEYS, f"{where}: {label} has ")
        for end in (src, dst):
            if not _is_int(end):
                raise GenotypeError(f"{where}: {label}: node {brief(end)} is not an integer")
            if end not in ids:
                raise GenotypeError(f"{where}: {label} names node {end}, which is out of "
                                    f"range (nodes {low}..{high})")
        if "op" not in edge:
            raise GenotypeError(f"{where}: {label} has no op")
        if not isinstance(edge["op"], str):
            raise GenotypeError(f"{where}: {label}: op must be a string, got "
                                f"{brief(edge['op'])}")
        if "weight" in edge and not _is_number(edge["weight"]):
            raise GenotypeError(f"{where}: {label}: weight must be a finite number, got "
                                f"{brief(edge['weight'])}")
        # Slots order a node's inputs; files without keys use the order they list edges in.
        key = edge.get("key", next_slot.get(dst, 0))
        if not _is_int(key) or key < 0:
            raise GenotypeError(f"{where}: {label}: key must be a non-negative integer slot, "
                                f"got {brief(key)}")
        if (dst, key) in used:
            raise GenotypeError(f"{where}: node {dst} has two inputs in slot {key}")
        used.add((dst, key))
        next_slot[dst] = max(next_slot.get(dst, 0), key + 1)
        attrs = {"op": edge["op"]}
        if "weight" in edge:
            attrs["weight"] = edge["weight"]
        graph.add_edge(src, dst, key=key, **attrs)
    return graph


def _chain_from_data(data: Any, cell_name: str) -> nx.MultiDiGraph:
    return chain_from_data(data, f"cell {cell_name!r}")


_READERS = {DARTS_CELL: _cell_from_data, MBCONV_CHAIN: _chain_from_data}


# --- files ----------------------------------------------------------------------------

# A JSON string, so brackets inside strings are not counted as nesting.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (linear; strings are skipped)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str) -> Any:
    raise GenotypeError(f"{name} is not valid JSON (numbers must be finite)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise GenotypeError(f"the number {brief(text)} is too large for a 64-bit float")
    return value


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise GenotypeError(f"the integer {brief(text, 30)} has more than {MAX_INT_DIGITS} "
                            "digits")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise GenotypeError(f"the key {brief(key)} appears twice in one object")
            seen.add(key)
    return obj


def loads_strict(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, integers of at most
    MAX_INT_DIGITS digits, nesting at most MAX_DEPTH. Raises GenotypeError (no file name)."""
    if len(text) > MAX_FILE_BYTES:
        raise GenotypeError(f"{len(text):,} characters; the limit is {MAX_FILE_BYTES:,}")
    depth = json_depth(text)
    if depth > MAX_DEPTH:
        raise GenotypeError(f"JSON nested {depth:,} levels deep; the limit is {MAX_DEPTH}")
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_parse_float,
                          parse_int=_parse_int, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise GenotypeError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (RecursionError, MemoryError):  # not reached below MAX_DEPTH; kept as a guard
        raise GenotypeError("JSON too deeply nested or too large to read") from None


def read_text(p: Path, what: str = "a genotype JSON file") -> str:
    """A file's text, refused in one line if missing, a folder, binary or too large."""
    if p.is_dir():
        raise GenotypeError(f"{p}: is a directory, expected {what}")
    if p.is_fifo() or p.is_socket():  # opening a pipe blocks until something writes to it
        raise GenotypeError(f"{p}: is a pipe or socket, not a file; expected {what}")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise GenotypeError(f"{p}: the file is {size:,} bytes; genotype files are limited "
                                f"to {MAX_FILE_BYTES:,} bytes")
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # bounded: a pipe or /dev/zero has no size
    except FileNotFoundError:
        raise GenotypeError(f"{p}: no such file") from None
    except OSError as exc:
        raise GenotypeError(f"{p}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise GenotypeError(f"{p}: longer than the {MAX_FILE_BYTES:,}-byte limit of genotype "
                            "files")
    if not raw.strip():
        raise GenotypeError(f"{p}: the file is empty")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark, as some editors write, is fine
    except UnicodeDecodeError:
        raise GenotypeError(f"{p}: not a text file (binary data?); expected JSON") from None


def read_genotype(path: str | os.PathLike[str]) -> Genotype:
    """Read a ``*.genotype.json`` file; every problem is one GenotypeError naming the file."""
    p = Path(path)
    text = read_text(p)
    try:
        return genotype_from_dict(loads_strict(text))
    except GenotypeError as exc:
        raise GenotypeError(f"{p}: {exc}") from None


def write_genotype(genotype: Genotype, path: str | os.PathLike[str]) -> Path:
    """Write atomically; stamps nasctl_version and created into provenance when absent.
    Refuses (GenotypeError) what would not be valid JSON, e.g. a NaN in provenance."""
    stamps = {
        "nasctl_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        text = dumps_genotype(genotype, {**stamps, **genotype.provenance})
    except GenotypeError as exc:
        raise GenotypeError(f"{path}: {exc}") from None
    return atomic.write_text(path, text + "\n")


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
