"""Malformed genotypes are refused with one clear line naming the file and the problem,
exit code 2, never a traceback."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from cli import assert_refused, nasctl

from nasctl.genotypes import load_genotype
from nasctl.genotypes.io import genotype_to_dict, read_genotype

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

_TEXT = json.dumps(GOOD)
_FIRST_OP = '"op": "sep_conv_3x3"'


def _text(old: str, new: str) -> bytes:
    assert old in _TEXT
    return _TEXT.replace(old, new, 1).encode()


def _big_cell(edges: int) -> dict:
    return {"nodes": [{"id": i} for i in range(3)],
            "edges": [{"source": 0, "target": 2, "op": "skip_connect"}] * edges}


# The strict schema (docs/genotype-format.md): nothing coerced, nothing dropped.
CASES.update({
    "unknown top-level key": (_doc(_set(["comment"], "hi")), "unknown key 'comment'"),
    "version true": (_doc(_set(["version"], True)), "unsupported genotype version True"),
    "version 1.0": (_doc(_set(["version"], 1.0)), "unsupported genotype version 1.0"),
    "version string": (_doc(_set(["version"], "1")), "unsupported genotype version '1'"),
    "float edge source": (_doc(lambda d: _normal_edges(d)[0].update(source=0.0)),
                          "node 0.0 is not an integer"),
    "float edge target": (_doc(lambda d: _normal_edges(d)[0].update(target=2.0)),
                          "node 2.0 is not an integer"),
    "bool edge source": (_doc(lambda d: _normal_edges(d)[0].update(source=True)),
                         "node True is not an integer"),
    "float node id": (_doc(lambda d: d["cells"]["normal"]["nodes"].append({"id": 6.0})),
                      "node id 6.0 is not an integer"),
    "negative node id": (_doc(lambda d: d["cells"]["normal"]["nodes"].append({"id": -1})),
                         "node id -1 is negative"),
    "negative slot": (_doc(lambda d: _normal_edges(d)[0].update(key=-1)),
                      "key must be a non-negative integer slot"),
    "float slot": (_doc(lambda d: _normal_edges(d)[0].update(key=0.0)),
                   "key must be a non-negative integer slot"),
    "null slot": (_doc(lambda d: _normal_edges(d)[0].update(key=None)),
                  "key must be a non-negative integer slot"),
    "NaN weight": (_text(_FIRST_OP, _FIRST_OP + ', "weight": NaN'), "NaN is not valid JSON"),
    "Infinity weight": (_text(_FIRST_OP, _FIRST_OP + ', "weight": -Infinity'),
                        "-Infinity is not valid JSON"),
    "overflowing weight": (_text(_FIRST_OP, _FIRST_OP + ', "weight": 1e999'),
                           "too large for a 64-bit float"),
    "NaN in provenance": (_text('"provenance": {', '"provenance": {"loss": NaN, '),
                          "NaN is not valid JSON"),
    "string weight": (_doc(lambda d: _normal_edges(d)[0].update(weight="0.9")),
                      "weight must be a finite number"),
    "bool weight": (_doc(lambda d: _normal_edges(d)[0].update(weight=True)),
                    "weight must be a finite number"),
    "null weight": (_doc(lambda d: _normal_edges(d)[0].update(weight=None)),
                    "weight must be a finite number"),
    "unknown edge key": (_doc(lambda d: _normal_edges(d)[0].update(color="red")),
                         "unknown key 'color'"),
    "unknown node key": (_doc(lambda d: d["cells"]["normal"]["nodes"][0].update(label="x")),
                         "unknown key 'label'"),
    "unknown cell key": (_doc(_set(["cells", "normal", "extra"], 1)), "unknown key 'extra'"),
    "unknown graph key": (_doc(_set(["cells", "normal", "graph", "name"], "x")),
                          "unknown key 'name'"),
    "unknown cell": (_doc(_set(["cells", "third"], {})), "unknown cells ['third']"),
    "edges and links": (_doc(lambda d: d["cells"]["normal"].update(
        links=d["cells"]["normal"]["edges"])), 'give "edges" or "links"'),
    "not directed": (_doc(_set(["cells", "normal", "directed"], False)),
                     '"directed" must be true'),
    "op not a string": (_doc(lambda d: _normal_edges(d)[0].update(op=["sep_conv_3x3"])),
                        "op must be a string"),
    "concat not a list": (_doc(_set(["cells", "normal", "graph", "concat"], 2)),
                          "concat must be a list"),
    "bool in concat": (_doc(_set(["cells", "normal", "graph", "concat"], [True, 3])),
                       "concat names node True"),
    "name not a string": (_doc(_set(["name"], 7)), '"name" must be a string'),
    "name too long": (_doc(_set(["name"], "n" * 300)), "the limit is 256"),
    "provenance not an object": (_doc(_set(["provenance"], [1])),
                                 '"provenance" must be an object'),
    "search space not a string": (_doc(_set(["search_space"], 1)),
                                  '"search_space" must be a string'),
    "unknown search space": (_doc(_set(["search_space"], "nasbench")),
                             "unsupported search space 'nasbench'"),
    "duplicate key": (_text('"version": 1', '"version": 1, "version": 1'),
                      "the key 'version' appears twice"),
    "huge integer": (_text('"key": 0', '"key": ' + "9" * 5000), "more than 20 digits"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested 100,000 levels deep"),
    "deep provenance": (_text('"provenance": {', '"provenance": {"x": ' + "[" * 5000
                              + "]" * 5000 + ", "), "the limit is 64"),
    "too many edges": (_doc(_set(["cells", "normal"], _big_cell(60_000))),
                       "60,000 edges; the limit is 50,000"),
    "too many nodes": (_doc(_set(["cells", "normal", "nodes"],
                                 [{"id": i} for i in range(20_000)])),
                       "20,000 nodes; the limit is 10,000"),
    "file too large": (b" " * (17 * 1024 * 1024) + json.dumps(GOOD).encode(),
                       "limited to 16,777,216 bytes"),
    "latin-1 text": ("{\"name\": \"caf\xe9\"}".encode("latin-1"), "not a text file"),
    "a bare number": (b"1", "expected a JSON object, got a number"),
    "escape codes in an op": (_doc(lambda d: _normal_edges(d)[0].update(op="\x1b[31mred")),
                              "unknown op '\\x1b[31mred'"),
})

# Other formats in a file: NNI-style dicts and DARTS strings get the same limits.
_NNI = load_genotype("DARTS_V2").to_nni()
CASES.update({
    "NNI num_nodes not an integer": ({**_NNI, "normal/num_nodes": "4"},
                                     "normal/num_nodes must be a positive integer"),
    "NNI num_nodes a billion": ({**_NNI, "normal/num_nodes": 10**9},
                                "1,000,000,002 nodes and 8 edges; the limits are 10,000"),
    "NNI node index a billion": ({**_NNI, "normal/op_999999999_0": "skip_connect",
                                  "normal/input_999999999_0": [0]},
                                 "the limits are 10,000"),
    "DARTS string with a huge range": (
        b"Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], "
        b"normal_concat=range(2, 10**9), reduce=[('skip_connect', 0), ('skip_connect', 1)], "
        b"reduce_concat=[2])", "is not a literal"),
    "DARTS string with a NUL byte": (b"Genotype(normal=[('skip_connect', 0)]\x00, reduce=[])",
                                     "not a genotype string"),
})


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_genotype_file_is_refused(case: str, tmp_path: Path) -> None:
    content, expected = CASES[case]
    path = tmp_path / "bad.genotype.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    assert_refused(nasctl("genotypes", "show", str(path)), str(path), expected)


def test_large_genotypes_read_in_linear_time(tmp_path: Path) -> None:
    """Quadratic before: 6,000 edges into one node took 20 s, and a 3,000-node dead chain
    (pruned node by node) over a minute. At the limits both now read in about a second."""
    fan_in = {"nodes": [{"id": i} for i in range(3)],
              "edges": [{"source": i % 2, "target": 2, "op": "skip_connect"}
                        for i in range(50_000)]}
    n = 9_990  # node 2 has no input, so the chain 2 -> 3 -> ... it feeds is dead too
    dead_chain = {"nodes": [{"id": i} for i in range(n + 3)],
                  "edges": [{"source": i, "target": i + 1, "op": "skip_connect"}
                            for i in range(2, n + 2)]
                  + [{"source": 0, "target": n + 2, "op": "skip_connect"}]}
    path = tmp_path / "big.genotype.json"
    path.write_text(json.dumps(_doc(lambda d: d["cells"].update(normal=fan_in,
                                                               reduce=dead_chain))))
    start = time.perf_counter()
    genotype = read_genotype(path)
    assert time.perf_counter() - start < 20
    assert genotype.normal.in_degree(2) == 50_000
    assert list(genotype.reduce.edges()) == [(0, n + 2)]
    assert genotype.reduce.graph["concat"] == [n + 2]


def test_directory_is_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("validate", str(tmp_path)), "is a directory")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("validate", str(tmp_path / "nope.json")), "nope.json")


def test_endless_device_file_is_refused_not_read_forever() -> None:
    assert_refused(nasctl("genotypes", "show", "/dev/zero"), "/dev/zero",
                   "longer than the 16,777,216-byte limit")


def test_names_from_files_cannot_restyle_the_terminal(tmp_path: Path) -> None:
    """A name holding ANSI escape codes and rich markup is printed literally, escaped."""
    name = "\x1b[31mEVIL[bold]x[/bold]\x1b[0m"
    path = tmp_path / "evil.genotype.json"
    path.write_text(json.dumps(_doc(_set(["name"], name))))
    proc = nasctl("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert r"\x1b[31mEVIL[bold]x[/bold]\x1b[0m" in proc.stdout


PAIRS = "[('skip_connect', 0), ('skip_connect', 1)]"


@pytest.mark.parametrize(("text", "expected"), [
    ("Genotype(normal=__import__('os').system('true'), reduce=[])", "not allowed"),
    ("Genotype(normal=os.environ, reduce=[])", "attribute access"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "not a genotype string"),
    ("Genotype(normal=[('sep_conv_3x3', 2, 0)], reduce=[('bogus_op', 2, 1)])", "unknown op"),
    # sizes: a range or a node index must not make nasctl build a billion of anything
    (f"Genotype(normal={PAIRS}, normal_concat=range(2, 1000000002), reduce={PAIRS}, "
     "reduce_concat=[2])", "'range(2, 1000000002)' spans 1,000,000,000 values; the limit is "
                           "10,000"),
    (f"Genotype(normal={PAIRS}, normal_concat=range(-1000000000, 6), reduce={PAIRS})",
     "spans 1,000,000,006 values"),
    (f"Genotype(normal={PAIRS}, normal_concat=range(2.0, 6), reduce={PAIRS})",
     "range takes integers"),
    (f"Genotype(normal={PAIRS}, normal_concat=range(True), reduce={PAIRS})",
     "range takes integers"),
    ("Genotype(normal=range(1000000000), reduce=[])", "the limit is 10,000"),
    ("Genotype(normal=[('skip_connect', 1000000000, 0)], reduce=[('skip_connect', 2, 0)])",
     "1,000,000,001 nodes and 1 edges; the limits are 10,000"),
    # what ast itself chokes on: deep nesting, unhashable keys
    ("Genotype(normal=" + "[" * 500 + "]" * 500 + ", reduce=[])", "not a genotype string"),
    ("{'normal': {[1]: 2}, 'reduce': []}", "is not a literal"),
    (f"Genotype(normal={PAIRS}, normal_concat=[2], reduce=[('\x1b[31m', 0), "
     "('skip_connect', 1)])", "unknown op '\\x1b[31m'"),
    # a FairDARTS edge past its cell's concat: refused, not made a new output node
    ("Genotype(normal=[('sep_conv_3x3', 2, 0), ('skip_connect', 99, 1)], normal_concat="
     "range(2, 6), reduce=[('max_pool_3x3', 2, 0)], reduce_concat=range(2, 6))",
     "edge ('skip_connect', 99, 1) reads into node 99, past node 5, the last of normal_concat"),
])
def test_bad_genotype_strings_are_refused(text: str, expected: str, tmp_path: Path) -> None:
    assert_refused(nasctl("genotypes", "import", text, "--out", str(tmp_path / "g.json")),
                          expected)
    assert not (tmp_path / "g.json").exists()


def test_a_card_without_a_genotype_says_so(tmp_path: Path) -> None:
    assert_refused(nasctl("genotypes", "show", "iDARTS"),
                   "iDARTS is a paper card without a published genotype")
