"""Converters between Genotype and the formats other code uses.

- DARTS 2-tuples: ``Genotype(normal=[(op, from), ...], normal_concat=[2, 3, 4, 5], ...)``,
  two inputs per intermediate node, in order.
- FairDARTS 3-tuples: ``(op, to_node, from_node)``; a node may have 0, 1 or more inputs;
  the official code ignores ``*_concat`` and concatenates the live nodes.
- NNI-style flat dict: ``{"normal/op_2_0": op, "normal/input_2_0": [from], ...}``.

Strings are parsed with ``ast``: only literals, the outer ``Genotype(...)`` call and
``range(a, b)`` for a concat are accepted; any other call or attribute is refused.
"""

from __future__ import annotations

import ast
import re
from collections import namedtuple
from typing import Any

from nasctl.errors import ConversionError, GenotypeError
from nasctl.genotypes.genotype import (
    Genotype,
    cell_inputs,
    intermediate_nodes,
    live_nodes,
    make_cell,
)
from nasctl.genotypes.limits import MAX_FILE_BYTES, MAX_RANGE, brief
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL, NUM_INPUTS

# The exact namedtuple DARTS-family code defines (cnn/genotypes.py).
DartsGenotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")  # noqa: PYI024

FAIRDARTS_STEPS = 4  # the official FairDARTS cell always has 4 intermediate nodes


def _require_cells(genotype: Genotype, fmt: str) -> None:
    if genotype.search_space != DARTS_CELL:
        raise ConversionError(
            f"the {fmt} format describes DARTS cells; a {genotype.search_space!r} genotype "
            "has none (use the json format)"
        )


# --- DARTS 2-tuples -------------------------------------------------------------------

def from_darts(obj: Any, name: str | None = None) -> Genotype:
    """From a DARTS namedtuple, dict, or any object with normal/reduce(+_concat) fields."""
    fields = _fields(obj)
    cells = {}
    for cell_name in CELL_NAMES:
        pairs = _tuple_list(fields[cell_name], 2, cell_name)
        if len(pairs) % 2:
            raise GenotypeError(
                f"cell {cell_name!r}: DARTS genotypes list two (op, from) pairs per node, "
                f"got {len(pairs)} pairs"
            )
        steps = len(pairs) // 2
        edges = [(op, src, NUM_INPUTS + i // 2) for i, (op, src) in enumerate(pairs)]
        _check_sources(edges, cell_name)
        concat = fields.get(f"{cell_name}_concat")
        cells[cell_name] = make_cell(edges, _concat_list(concat, cell_name), steps)
    return Genotype(cells=cells, name=name, provenance={"imported_from": "darts"})


def to_darts(genotype: Genotype) -> Any:
    """A namedtuple as DARTS-family code defines it. Needs exactly two inputs per node."""
    _require_cells(genotype, "darts")
    out: dict[str, Any] = {}
    for cell_name in CELL_NAMES:
        cell = genotype.cells[cell_name]
        pairs = []
        for node in intermediate_nodes(cell):
            inputs = cell_inputs(cell, node)
            if len(inputs) != 2:
                raise ConversionError(
                    f"cell {cell_name!r} node {node} has {len(inputs)} inputs; the DARTS "
                    "format needs exactly 2 per node (use the fairdarts format instead)"
                )
            pairs += [(op, src) for src, op in inputs]
        out[cell_name] = pairs
        out[f"{cell_name}_concat"] = list(cell.graph["concat"])
    return DartsGenotype(**out)


# --- FairDARTS 3-tuples ---------------------------------------------------------------

def from_fairdarts(obj: Any, name: str | None = None) -> Genotype:
    """From FairDARTS ``(op, to, from)`` lists. ``*_concat`` is not used to wire the cell
    (the official network concatenates its live nodes), but it bounds it: an edge into a
    node past the concat's last one is refused, not silently made a new output."""
    fields = _fields(obj)
    cells = {}
    for cell_name in CELL_NAMES:
        triples = _tuple_list(fields[cell_name], 3, cell_name)
        edges = [(op, src, dst) for op, dst, src in triples]
        _check_sources(edges, cell_name)
        concat = _concat_list(fields.get(f"{cell_name}_concat"), cell_name)
        if concat:
            last = max(concat)
            beyond = next(((op, dst, src) for op, src, dst in edges if dst > last), None)
            if beyond is not None:
                raise GenotypeError(f"cell {cell_name!r}: edge {beyond} reads into node "
                                    f"{beyond[1]}, past node {last}, the last of "
                                    f"{cell_name}_concat")
        steps = max([FAIRDARTS_STEPS] + [dst - 1 for _op, _src, dst in edges])
        cells[cell_name] = make_cell(edges, None, steps)
    return Genotype(cells=cells, name=name, provenance={"imported_from": "fairdarts"})


def to_fairdarts(genotype: Genotype) -> Any:
    _require_cells(genotype, "fairdarts")
    out: dict[str, Any] = {}
    for cell_name in CELL_NAMES:
        cell = genotype.cells[cell_name]
        out[cell_name] = [
            (op, node, src)
            for node in intermediate_nodes(cell)
            for src, op in cell_inputs(cell, node)
        ]
        out[f"{cell_name}_concat"] = list(cell.graph["concat"])
    return DartsGenotype(**out)


# --- NNI-style flat dict --------------------------------------------------------------

_NNI_KEY = re.compile(r"^(normal|reduce)/(op|input)_(\d+)_(\d+)$")
_NNI_CONCAT = re.compile(r"^(normal|reduce)/concat$")


def to_nni(genotype: Genotype) -> dict[str, Any]:
    """Flat dict; a ``cell/concat`` key appears only where concat is not every live node."""
    _require_cells(genotype, "nni")
    out: dict[str, Any] = {}
    for cell_name in CELL_NAMES:
        cell = genotype.cells[cell_name]
        for node in intermediate_nodes(cell):
            for slot, (src, op) in enumerate(cell_inputs(cell, node)):
                out[f"{cell_name}/op_{node}_{slot}"] = op
                out[f"{cell_name}/input_{node}_{slot}"] = [src]
        steps = len(intermediate_nodes(cell))
        if cell.graph["concat"] != live_nodes(cell) or steps != len(live_nodes(cell)):
            out[f"{cell_name}/concat"] = list(cell.graph["concat"])
            out[f"{cell_name}/num_nodes"] = steps
    return out


def from_nni(flat: Any, name: str | None = None) -> Genotype:
    if not isinstance(flat, dict):
        raise GenotypeError("an NNI-style genotype is a flat JSON object")
    found: dict[str, dict[tuple[int, int], dict[str, Any]]] = {c: {} for c in CELL_NAMES}
    concats: dict[str, Any] = {}
    num_nodes: dict[str, int] = {}
    for key, value in flat.items():
        if m := _NNI_KEY.match(str(key)):
            cell_name, kind, node, slot = m[1], m[2], int(m[3]), int(m[4])
            found[cell_name].setdefault((node, slot), {})[kind] = value
        elif m := _NNI_CONCAT.match(str(key)):
            concats[m[1]] = value
        elif re.match(r"^(normal|reduce)/num_nodes$", str(key)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GenotypeError(f"{key} must be a positive integer, got {brief(value)}")
            num_nodes[str(key).split("/")[0]] = value
        else:
            raise GenotypeError(f"unexpected key {brief(key)} in an NNI-style genotype")
    cells = {}
    for cell_name in CELL_NAMES:
        if not found[cell_name]:
            raise GenotypeError(f"missing cell {cell_name!r}")
        edges = []
        for (node, slot), entry in sorted(found[cell_name].items()):
            if "op" not in entry or "input" not in entry:
                raise GenotypeError(f"{cell_name} node {node} slot {slot}: needs op and input")
            src = entry["input"]
            src = src[0] if isinstance(src, list) and len(src) == 1 else src
            if not isinstance(src, int) or isinstance(src, bool):
                raise GenotypeError(f"{cell_name}/input_{node}_{slot} must be [node]")
            edges.append((entry["op"], src, node))
        _check_sources(edges, cell_name)
        steps = num_nodes.get(cell_name, max(dst for *_x, dst in edges) - 1)
        cells[cell_name] = make_cell(edges, concats.get(cell_name), steps)
    return Genotype(cells=cells, name=name, provenance={"imported_from": "nni"})


# --- strings --------------------------------------------------------------------------

def parse_genotype_string(text: str, name: str | None = None) -> Genotype:
    """Parse a DARTS ``Genotype(...)`` string (2-tuples) or a FairDARTS one (3-tuples).

    Also accepts the same fields as a dict literal. Never evaluates code.
    """
    if len(text) > MAX_FILE_BYTES:
        raise GenotypeError(f"the genotype string has {len(text):,} characters; the limit is "
                            f"{MAX_FILE_BYTES:,}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise GenotypeError(f"not a genotype string: {exc.msg} at column {exc.offset}") from None
    except (ValueError, MemoryError, RecursionError):  # a NUL byte; nesting the parser refuses
        raise GenotypeError("not a genotype string: the parser refused it (a NUL byte or "
                            "nesting too deep)") from None
    fields = _literal_fields(tree.body)
    arity = _arity(fields)
    return from_darts(fields, name) if arity == 2 else from_fairdarts(fields, name)


def _literal_fields(node: ast.expr) -> dict[str, Any]:
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id == "Genotype") or node.args:
            raise GenotypeError(
                "a genotype string may only call Genotype(field=...), found "
                f"{brief(ast.unparse(node.func))}(...)"
            )
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.Dict):
        value = _literal(node)
        return {str(k): v for k, v in value.items()}
    raise GenotypeError("expected Genotype(normal=..., reduce=...) or a dict literal")


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Call):
        is_range = isinstance(node.func, ast.Name) and node.func.id == "range"
        if is_range and not node.keywords and 1 <= len(node.args) <= 2:
            return _range([_literal(a) for a in node.args], ast.unparse(node))
        raise GenotypeError(f"function call {brief(ast.unparse(node))} is not allowed in a "
                            "genotype")
    if isinstance(node, ast.Attribute):
        raise GenotypeError(f"attribute access {brief(ast.unparse(node))} is not allowed in a "
                            "genotype")
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenotypeError(f"{brief(ast.unparse(node))} is not a literal") from None


def _range(args: list[Any], text: str) -> list[int]:
    """``range(stop)`` or ``range(start, stop)`` of integers, at most MAX_RANGE values."""
    if any(not isinstance(a, int) or isinstance(a, bool) for a in args):
        raise GenotypeError(f"{brief(text)}: range takes integers")
    start, stop = (0, args[0]) if len(args) == 1 else args
    if stop - start > MAX_RANGE:
        raise GenotypeError(f"{brief(text)} spans {stop - start:,} values; the limit is "
                            f"{MAX_RANGE:,}")
    return list(range(start, stop))


def _arity(fields: dict[str, Any]) -> int:
    for cell_name in CELL_NAMES:
        items = fields.get(cell_name)
        if isinstance(items, list | tuple) and items and isinstance(items[0], list | tuple):
            if len(items[0]) in (2, 3):
                return len(items[0])
            raise GenotypeError(
                f"cell {cell_name!r}: entries must be (op, from) or (op, to, from) tuples"
            )
    raise GenotypeError("the genotype has no normal or reduce entries")


# --- helpers --------------------------------------------------------------------------

def _fields(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        fields = dict(obj)
    elif hasattr(obj, "_asdict"):
        fields = dict(obj._asdict())
    else:
        fields = {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")}
    for cell_name in CELL_NAMES:
        if cell_name not in fields:
            raise GenotypeError(f"missing cell {cell_name!r}")
    return fields


def _tuple_list(items: Any, arity: int, cell_name: str) -> list[tuple[Any, ...]]:
    shape = "(op, from)" if arity == 2 else "(op, to, from)"
    if not isinstance(items, list | tuple) or not items:
        raise GenotypeError(f"cell {cell_name!r}: expected a non-empty list of {shape} tuples")
    out = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != arity:
            raise GenotypeError(f"cell {cell_name!r}: {brief(item)} is not an {shape} tuple")
        op, *nodes = item
        if not isinstance(op, str):
            raise GenotypeError(f"cell {cell_name!r}: {brief(item)} needs an op name first")
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in nodes):
            raise GenotypeError(f"cell {cell_name!r}: {brief(item)} has a bad node index")
        out.append(tuple(item))
    return out


def _check_sources(edges: list[tuple[str, int, int]], cell_name: str) -> None:
    for op, src, dst in edges:
        if dst < NUM_INPUTS:
            raise GenotypeError(f"cell {cell_name!r}: ({brief(op)}) points into input node {dst}")
        if src >= dst:
            raise GenotypeError(
                f"cell {cell_name!r}: node {dst} reads node {src}; a node can only read "
                "earlier nodes"
            )


def _concat_list(concat: Any, cell_name: str) -> list[int] | None:
    if concat is None:
        return None
    if isinstance(concat, range):
        return list(concat)
    if isinstance(concat, list | tuple) and all(isinstance(n, int) for n in concat):
        return list(concat)
    raise GenotypeError(f"cell {cell_name!r}: concat must be a list of node ids")
