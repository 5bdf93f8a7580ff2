"""Malformed genotypes are refused with one clear line naming the file and the problem,
exit code 2, never a traceback."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from cli import assert_refused, nasctl

from nasctl.genotypes import load_genotype
from nasctl.genotypes.io import genotype_to_dict

GOOD = genotype_to_dict(load_genotype("DARTS_V2"))


def _doc(edit) -> dict:
    doc = copy.deepcopy(GOOD)
    edit(doc)
    return doc


def _normal_edges(doc: dict) -> list:
    return doc["cells"]["normal"]["edges"]


def _set(path: list, value):
    def edit(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


CASES: dict[str, tuple[object, str]] = {
    "empty": (b"", "empty"),
    "whitespace": (b"  \n", "empty"),
    "truncated": (json.dumps(GOOD).encode()[:200], "invalid JSON"),
    "binary": (bytes(range(256)) * 4, "binary"),
    "not an object": (b"[1, 2, 3]", "expected a JSON object"),
    "unsupported version": (_doc(_set(["version"], 99)), "unsupported genotype version 99"),
    "wrong format tag": (_doc(_set(["format"], "other")), "not a nasctl genotype"),
    "missing cell": (_doc(lambda d: d["cells"].pop("reduce")), "missing cell 'reduce'"),
    "unknown op": (_doc(lambda d: _normal_edges(d)[0].update(op="conv_9x9")),
                   "unknown op 'conv_9x9'"),
    "edge with no op": (_doc(lambda d: _normal_edges(d)[0].pop("op")), "has no op"),
    "edge into input node": (_doc(lambda d: _normal_edges(d)[0].update(target=1)),
                             "points into input node 1"),
    "node out of range": (_doc(lambda d: _normal_edges(d)[0].update(source=17)),
                          "out of range"),
    "cycle": (_doc(lambda d: _normal_edges(d).append(
        {"source": 5, "target": 2, "key": 9, "op": "skip_connect"})), "cycle"),
    "later node read": (_doc(lambda d: _normal_edges(d).append(
        {"source": 5, "target": 4, "key": 9, "op": "skip_connect"})), "reads a later node"),
    "duplicate node id": (_doc(lambda d: d["cells"]["normal"]["nodes"].append({"id": 3})),
                          "duplicate node id 3"),
    "non-integer node id": (_doc(lambda d: d["cells"]["normal"]["nodes"].append({"id": "x"})),
                            "not an integer"),
    "concat names a missing node": (_doc(_set(["cells", "normal", "graph", "concat"], [2, 9])),
                                    "concat names node 9"),
    "two inputs in one slot": (_doc(lambda d: _normal_edges(d)[1].update(key=0)),
                               "two inputs in slot 0"),
}




@pytest.mark.parametrize("case", list(CASES))
def test_malformed_genotype_file_is_refused(case: str, tmp_path: Path) -> None:
    content, expected = CASES[case]
    path = tmp_path / "bad.genotype.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    assert_refused(nasctl("genotypes", "show", str(path)), str(path), expected)


def test_directory_is_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("validate", str(tmp_path)), "is a directory")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("validate", str(tmp_path / "nope.json")), "nope.json")


@pytest.mark.parametrize(("text", "expected"), [
    ("Genotype(normal=__import__('os').system('true'), reduce=[])", "not allowed"),
    ("Genotype(normal=os.environ, reduce=[])", "attribute access"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "not a genotype string"),
    ("Genotype(normal=[('sep_conv_3x3', 2, 0)], reduce=[('bogus_op', 2, 1)])", "unknown op"),
])
def test_bad_genotype_strings_are_refused(text: str, expected: str, tmp_path: Path) -> None:
    assert_refused(nasctl("genotypes", "import", text, "--out", str(tmp_path / "g.json")),
                          expected)
    assert not (tmp_path / "g.json").exists()
