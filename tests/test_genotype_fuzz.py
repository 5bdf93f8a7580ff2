"""Property-based tests of the genotype readers: whatever a file or string holds, reading
it gives a Genotype or a NasctlError (one line for the CLI), never another exception; and
whatever reads is written back as strict JSON that reads to the same genotype."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasctl.errors import NasctlError
from nasctl.genotypes import Genotype, from_nni, load_genotype, parse_genotype_string
from nasctl.genotypes.io import dumps_genotype, genotype_to_dict, read_genotype
from nasctl.genotypes.sources import read_any

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GOOD = genotype_to_dict(load_genotype("FairDARTS_a"))
GOOD["provenance"] = {"seed": 0, "discretization": {"threshold": 0.85}}
DARTS_TEXT = repr(load_genotype("DARTS_V2").to_darts())
NNI = load_genotype("DARTS_V2").to_nni()

# JSON-ish values, including what JSON has no place for (NaN, infinities, huge integers)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-3, 12) | st.floats()
    | st.text(max_size=6) | st.sampled_from(["sep_conv_3x3", "none", "normal", "concat"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["id", "key", "op", "edges"]),
                      inner, max_size=4),
    max_leaves=12,
)


def _locations(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in ``doc``, plus (None, None) for the document itself."""
    found: list[tuple[Any, Any]] = [(None, None)]
    stack = [doc]
    while stack:
        node = stack.pop()
        items = (node.items() if isinstance(node, dict)
                 else enumerate(node) if isinstance(node, list) else ())
        for key, value in items:
            found.append((node, key))
            stack.append(value)
    return found


def _mutate(doc: Any, data: st.DataObject) -> Any:
    """``doc`` with one value anywhere in it replaced or removed, or a key added beside it
    (every location equally likely, so most edits hit the cells' nodes and edges)."""
    doc = copy.deepcopy(doc)
    parent, key = data.draw(st.sampled_from(_locations(doc)))
    action = data.draw(st.sampled_from(["replace", "remove", "add"]))
    if parent is None:
        return data.draw(values) if action == "replace" else doc
    if action == "replace":
        parent[key] = data.draw(values)
    elif action == "remove":
        del parent[key]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=6))] = data.draw(values)
    else:
        parent.append(data.draw(values))
    return doc


def _reads_or_refuses(path: Path) -> Genotype | None:
    try:
        return read_genotype(path)
    except NasctlError:
        return None


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} was written")


def _round_trips(genotype: Genotype, path: Path) -> None:
    text = dumps_genotype(genotype)
    json.loads(text, parse_constant=_not_json)  # strict JSON: no NaN or Infinity
    path.write_text(text)
    assert read_genotype(path) == genotype


@FAST
@given(data=st.data())
def test_any_edit_of_a_genotype_file_reads_or_is_refused(data: st.DataObject,
                                                         tmp_path_factory: Any) -> None:
    doc = _mutate(_mutate(GOOD, data), data)
    path = tmp_path_factory.mktemp("fuzz") / "g.genotype.json"
    path.write_text(json.dumps(doc))  # NaN and Infinity are written as such
    genotype = _reads_or_refuses(path)
    if genotype is not None:
        assert all(math.isfinite(w) for cell in genotype.cells.values()
                   for *_e, w in cell.edges(data="weight", default=0.0))
        _round_trips(genotype, path)


@FAST
@given(content=st.binary(max_size=300)
       | st.text(alphabet='{}[]",:0123456789.eE-+ \\tnulrfase', max_size=300).map(str.encode)
       | st.builds(lambda at, cut, junk: (json.dumps(GOOD)[:at] + junk
                                          + json.dumps(GOOD)[at + cut:]).encode(),
                   st.integers(0, len(json.dumps(GOOD))), st.integers(0, 20),
                   st.text(max_size=5)))
def test_any_bytes_read_or_are_refused(content: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "g.json"
    path.write_bytes(content)
    genotype = _reads_or_refuses(path)
    if genotype is not None:
        _round_trips(genotype, path)
    with contextlib.suppress(NasctlError):  # the CLI's reader: NNI dicts, Genotype(...) too
        read_any(str(path))


@FAST
@given(at=st.integers(0, len(DARTS_TEXT)), cut=st.integers(0, 12),
       junk=st.text(alphabet="()[],'0123456789 =_-.*rangeGenotypx", max_size=12))
def test_any_edit_of_a_genotype_string_imports_or_is_refused(at: int, cut: int,
                                                             junk: str) -> None:
    text = DARTS_TEXT[:at] + junk + DARTS_TEXT[at + cut:]
    with contextlib.suppress(NasctlError):
        parse_genotype_string(text)


@FAST
@given(data=st.data())
def test_any_edit_of_an_nni_dict_imports_or_is_refused(data: st.DataObject) -> None:
    with contextlib.suppress(NasctlError):
        from_nni(_mutate(NNI, data))
