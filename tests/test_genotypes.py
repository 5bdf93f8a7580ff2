"""The genotype graph: converters, round trips, dead-node pruning, the zoo."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasctl.errors import ConversionError, GenotypeError
from nasctl.genotypes import (
    cell_inputs,
    from_darts,
    from_fairdarts,
    from_nni,
    load_genotype,
    parse_genotype_string,
    read_genotype,
    to_darts,
    to_fairdarts,
    to_nni,
    write_genotype,
    write_graphml,
    zoo_names,
)
from nasctl.genotypes.spaces import FAIRDARTS_OPS

DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def test_darts_string_round_trips_exactly() -> None:
    genotype = parse_genotype_string(DARTS_V2_TEXT)
    assert repr(genotype.to_darts()) == DARTS_V2_TEXT
    assert genotype.cells_data() == load_genotype("DARTS_V2").cells_data()


def test_range_concat_is_accepted() -> None:
    text = DARTS_V2_TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert parse_genotype_string(text).normal.graph["concat"] == [2, 3, 4, 5]


def test_input_order_within_a_node_is_kept() -> None:
    g = load_genotype("DARTS_V1")  # node 2 reads node 1 first, then node 0
    assert cell_inputs(g.normal, 2) == [(1, "sep_conv_3x3"), (0, "sep_conv_3x3")]
    assert to_darts(g).normal[:2] == [("sep_conv_3x3", 1), ("sep_conv_3x3", 0)]


def test_fairdarts_dead_node_is_pruned() -> None:
    g = load_genotype("FairDARTS_a")  # normal cell: node 3 has no input
    assert g.normal.graph["concat"] == [2, 4, 5]
    assert g.normal.in_degree(3) == 0 and g.normal.out_degree(3) == 0
    assert g.reduce.graph["concat"] == [2, 3, 4, 5]


def test_edges_leaving_a_dead_node_are_dropped_transitively() -> None:
    # node 3 is dead; node 4 reads only node 3 so it dies too; node 5 keeps its other input
    g = from_fairdarts({
        "normal": [("sep_conv_3x3", 2, 0), ("skip_connect", 4, 3), ("max_pool_3x3", 5, 4),
                   ("sep_conv_5x5", 5, 1)],
        "reduce": [("max_pool_3x3", 2, 0)],
    })
    assert g.normal.graph["concat"] == [2, 5]
    assert cell_inputs(g.normal, 5) == [(1, "sep_conv_5x5")]
    assert g.reduce.graph["concat"] == [2]


def test_fairdarts_tuples_round_trip() -> None:
    g = load_genotype("FairDARTS_d")
    again = from_fairdarts(to_fairdarts(g))
    assert again.cells_data() == g.cells_data()


def test_to_darts_refuses_cells_without_two_inputs() -> None:
    with pytest.raises(ConversionError, match="exactly 2"):
        to_darts(load_genotype("FairDARTS_a"))


def test_several_ops_on_one_edge() -> None:
    g = from_fairdarts({
        "normal": [("sep_conv_3x3", 2, 0), ("max_pool_3x3", 2, 0), ("skip_connect", 3, 2)],
        "reduce": [("avg_pool_3x3", 2, 1)],
    })
    assert g.normal.number_of_edges(0, 2) == 2
    assert from_nni(to_nni(g)).cells_data() == g.cells_data()


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_genotype_round_trips_through_every_format(name: str, tmp_path) -> None:
    g = load_genotype(name)
    path = tmp_path / "g.genotype.json"
    write_genotype(g, path)
    back = read_genotype(path)
    assert back.cells_data() == g.cells_data() and back.name == name
    assert from_nni(json.loads(json.dumps(to_nni(g)))).cells_data() == g.cells_data()
    assert from_fairdarts(to_fairdarts(g)).cells_data() == g.cells_data()
    if all(len(cell_inputs(c, n)) == 2 for c in g.cells.values() for n in range(2, 6)):
        assert parse_genotype_string(repr(to_darts(g))).cells_data() == g.cells_data()


@st.composite
def random_cells(draw: st.DrawFn) -> dict[str, list[tuple[str, int, int]]]:
    cells = {}
    for cell_name in ("normal", "reduce"):
        steps = draw(st.integers(1, 5))
        triples = []
        for node in range(2, 2 + steps):
            for _ in range(draw(st.integers(0, 3))):
                triples.append((draw(st.sampled_from(FAIRDARTS_OPS)), node,
                                draw(st.integers(0, node - 1))))
        if not any(dst == 2 for _op, dst, _src in triples):
            triples.insert(0, ("skip_connect", 2, 0))  # keep the cell non-empty
        cells[cell_name] = triples
    return cells


def wiring(g) -> dict:
    """What a network computes: every edge with its slot, and concat. The FairDARTS tuple
    format carries exactly this (it cannot name a trailing dead node, which computes nothing)."""
    return {name: (sorted(cell.edges(keys=True, data="op")), cell.graph["concat"])
            for name, cell in g.cells.items()}


@settings(max_examples=60, deadline=None)
@given(cells=random_cells())
def test_random_genotypes_round_trip_losslessly(cells, tmp_path_factory) -> None:
    g = from_fairdarts(cells)
    path = tmp_path_factory.mktemp("rt") / "g.json"
    write_genotype(g, path)
    assert read_genotype(path).cells_data() == g.cells_data()
    assert from_nni(to_nni(g)).cells_data() == g.cells_data()
    assert wiring(from_fairdarts(to_fairdarts(g))) == wiring(g)
    for cell in g.cells.values():
        assert nx.is_directed_acyclic_graph(cell)
        live = [n for n in cell.nodes if n >= 2 and cell.in_degree(n) > 0]
        assert set(cell.graph["concat"]) == set(live)
        for n in cell.nodes:  # no dead node feeds anything
            if n >= 2 and cell.in_degree(n) == 0:
                assert cell.out_degree(n) == 0


def test_graphml_export_is_readable(tmp_path) -> None:
    path = write_graphml(load_genotype("PDARTS"), tmp_path / "p.graphml")
    graph = nx.read_graphml(path, force_multigraph=True)
    assert graph.number_of_edges() == 16
    assert {d["op"] for _u, _v, d in graph.edges(data=True)} >= {"dil_conv_5x5", "skip_connect"}


def test_code_in_a_genotype_string_is_refused_not_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    evil = f"Genotype(normal=__import__('os').system('touch {marker}'), reduce=[])"
    with pytest.raises(GenotypeError, match="not allowed"):
        parse_genotype_string(evil)
    assert not marker.exists()


def test_load_genotype_does_not_import_torch() -> None:
    code = ("import sys; from nasctl.genotypes import load_genotype; "
            "load_genotype('DARTS_V2').to_darts(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_from_darts_accepts_a_namedtuple() -> None:
    nt = to_darts(load_genotype("PC_DARTS_cifar"))
    assert from_darts(nt).cells_data() == load_genotype("PC_DARTS_cifar").cells_data()
