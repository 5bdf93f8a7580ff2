"""Latency tables: the deployment units against what the final networks compute, the
table file and its refusals, and `nasctl latency table|predict` through the real CLI, all
at tiny settings (no timing thresholds)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from nasctl.genotypes import load_genotype
from nasctl.genotypes.spaces import DARTS_OPS
from nasctl.latency.samples import random_cell_genotype, random_chain_genotype
from nasctl.latency.table import LatencyTableError, load_table, predict
from nasctl.nets.cell_units import CellDeployment
from nasctl.nets.chain_units import ChainDeployment
from nasctl.nets.mbconv import PROXYLESS_S2, MBConvBlock, scaled
from nasctl.nets.network import Cell
from nasctl.nets.ops import Identity
from tests.cli import assert_refused, nasctl

TINY_OPS = ("max_pool_3x3", "sep_conv_3x3")
TINY = ["--space", "cell", "--dataset", "digits", "-C", "4", "--layers", "3", "--nodes", "2",
        "--ops", ",".join(TINY_OPS), "--calibration", "2", "--rounds", "1"]


def _ran(net: torch.nn.Module, x: torch.Tensor) -> set[int]:
    """ids of the modules a forward pass calls."""
    called: set[int] = set()
    handles = [m.register_forward_hook(lambda m, _i, _o: called.add(id(m)))
               for m in net.modules()]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return called


def _executed_cell_ops(net: torch.nn.Module) -> tuple[Counter[str], int, int]:
    """(op name counts of the ops forward runs, preprocessing modules run, cells run)."""
    called = _ran(net, torch.randn(1, 3, 32, 32))
    ops: Counter[str] = Counter()
    pre = cells = 0
    for cell in (m for m in net.modules() if isinstance(m, Cell)):
        if id(cell) not in called:
            continue
        cells += 1
        pre += sum(id(p) in called for p in (cell.preprocess0, cell.preprocess1))
        for name, op in zip(cell.op_names, cell._ops, strict=True):
            if id(op) in called and not isinstance(op, Identity):
                ops[name] += 1
    return ops, pre, cells


@pytest.mark.parametrize("genotype", [
    load_genotype("DARTS_V2"), load_genotype("FairDARTS_a"), load_genotype("FairDARTS_b"),
    random_cell_genotype(DARTS_OPS, "uniform", 3), random_cell_genotype(DARTS_OPS, "skip", 5),
], ids=lambda g: g.name)
def test_cell_units_are_what_the_network_runs(genotype) -> None:
    deployment = CellDeployment(DARTS_OPS, "digits", channels=4, layers=5)
    units = deployment.units(genotype)
    kinds = Counter(u.key.split()[0] for u in units)
    ops, pre, cells = _executed_cell_ops(deployment.network(genotype))
    assert {k: kinds[k] for k in ops} == dict(ops)
    assert not set(kinds) - set(ops) - {"run", "stem", "head", "preprocess", "relu", "add",
                                        "concat"}
    assert kinds["preprocess"] == pre
    assert kinds["concat"] == cells
    assert kinds["stem"] == kinds["head"] == kinds["run"] == 1
    assert {u.key for u in units} <= {u.key for u in deployment.catalogue()}


def test_cell_groups_follow_the_supernet_edges() -> None:
    deployment = CellDeployment(DARTS_OPS, "digits", channels=4, layers=5)
    assert len(deployment.groups) == 2 * 14
    assert deployment.groups[0].label == "normal 0->2"
    assert deployment.groups[14].label == "reduce 0->2"
    normal = dict(zip(DARTS_OPS, deployment.groups[0].units, strict=True))
    reduce = dict(zip(DARTS_OPS, deployment.groups[14].units, strict=True))
    assert normal["none"] == () and normal["skip_connect"] == ()
    assert len(normal["sep_conv_3x3"]) == 3 and len(reduce["sep_conv_3x3"]) == 2
    assert reduce["skip_connect"][0].key.startswith("skip_connect c8 32x32 s2")
    assert reduce["sep_conv_3x3"][1].key == "sep_conv_3x3 c16 16x16 s2"


def test_chain_units_are_the_blocks_that_run() -> None:
    layout = scaled(PROXYLESS_S2, 0.25, divisor=4)
    deployment = ChainDeployment(layout, resolution=32, num_classes=10, dataset="digits")
    genotype = random_chain_genotype(layout, "skip", 1)
    net = deployment.network(genotype)
    called = _ran(net, torch.randn(1, 3, 32, 32))
    blocks = [m for m in net.modules() if isinstance(m, MBConvBlock)
              and m.mobile_inverted_conv is not None and id(m.mobile_inverted_conv) in called]
    kinds = Counter(u.key.split()[0] for u in deployment.units(genotype))
    assert sum(n for k, n in kinds.items() if k.startswith("mbconv")) == len(blocks)
    assert len(deployment.groups) == len(genotype.cells["chain"]) - 1
    assert all(len(c) == (0 if op == "skip" else 1) for g in deployment.groups
               for op, c in zip(g.candidates, g.units, strict=True))


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("latency") / "t.json"
    proc = nasctl("latency", "table", *TINY, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["entries"] == len(load_table(out).entries)
    return out


def test_table_round_trip_and_predict(table_path: Path) -> None:
    table = load_table(table_path)
    doc = json.loads(table_path.read_text())
    assert doc["format"] == "nasctl-latency-table" and doc["version"] == 1
    assert doc["keys"]["threads"] == 1 and doc["keys"]["settings"]["C"] == 4
    assert {"median_ms", "p10_ms", "p90_ms", "runs"} <= set(next(iter(doc["entries"].values())))
    deployment = CellDeployment(TINY_OPS, "digits", 4, 3, 2)
    genotype = random_cell_genotype(TINY_OPS, "uniform", 0, num_nodes=2)
    prediction = predict(table, deployment, genotype)
    assert prediction.total_ms == pytest.approx(
        sum(table.ms(u) for u in deployment.units(genotype)), abs=1e-3)
    assert sum(p.count for p in prediction.parts) == len(deployment.units(genotype))


def _predict(table: Path, *args: str) -> object:
    proc = nasctl("latency", "predict", *args, "--table", str(table), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_predict_json_and_measure(table_path: Path, tmp_path: Path) -> None:
    genotype = random_cell_genotype(TINY_OPS, "uniform", 2, num_nodes=2)
    from nasctl.genotypes import save_genotype

    save_genotype(genotype, tmp_path / "g.genotype.json")
    rows = _predict(table_path, str(tmp_path / "g.genotype.json"))
    assert isinstance(rows, list) and rows[0]["model"].endswith("g.genotype.json")
    assert rows[0]["predicted_ms"] > 0 and "measured_ms" not in rows[0]
    rows = _predict(table_path, str(tmp_path / "g.genotype.json"), "--measure")
    assert rows[0]["measured_ms"] > 0
    assert rows[0]["error_pct"] == pytest.approx(
        100 * (rows[0]["predicted_ms"] - rows[0]["measured_ms"]) / rows[0]["measured_ms"],
        abs=0.05)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d.update(version=2), "version 2"),
    (lambda d: d["keys"].pop("threads"), "keys lack threads"),
    (lambda d: d["entries"].update(bad={"ms": -1}), "entry 'bad'"),
])
def test_bad_tables_are_refused_in_one_line(table_path: Path, tmp_path: Path, change,
                                            needle: str) -> None:
    doc = json.loads(table_path.read_text())
    change(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(LatencyTableError, match=needle):
        load_table(bad)
    assert_refused(nasctl("latency", "predict", "DARTS_V2", "--table", str(bad)),
                   str(bad), needle)


def test_missing_and_non_json_tables_are_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("latency", "predict", "DARTS_V2", "--table",
                          str(tmp_path / "none.json")), "no such latency table")
    (tmp_path / "t.json").write_text("{not json")
    assert_refused(nasctl("latency", "predict", "DARTS_V2", "--table", str(tmp_path / "t.json")),
                   "not JSON")


def test_foreign_table_refused_unless_allowed(table_path: Path, tmp_path: Path) -> None:
    table = load_table(table_path)
    with pytest.raises(LatencyTableError, match=r"threads: 1 != 4\)?; settings \(C=4 != 8"):
        table.check_against({**table.keys, "threads": 4,
                             "settings": {**table.keys["settings"], "C": 8}}, False)
    assert table.check_against({**table.keys, "threads": 4}, True) == ["threads: 1 != 4"]
    doc = json.loads(table_path.read_text())
    doc["keys"]["device"] = "some other CPU"
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(doc))
    genotype = tmp_path / "g.genotype.json"
    from nasctl.genotypes import save_genotype

    save_genotype(random_cell_genotype(TINY_OPS, "uniform", 2, num_nodes=2), genotype)
    assert_refused(nasctl("latency", "predict", str(genotype), "--table", str(foreign)),
                   "device: 'some other CPU' != ", "--allow-foreign-table")
    rows = _predict(foreign, str(genotype), "--allow-foreign-table")
    assert rows[0]["predicted_ms"] > 0


def test_other_space_or_missing_units_refused(table_path: Path, tmp_path: Path) -> None:
    from nasctl.genotypes import save_genotype

    # DARTS_V2 has 4 nodes a cell; the table's cells have 2
    assert_refused(nasctl("latency", "predict", "DARTS_V2", "--table", str(table_path)),
                   "no entry for")
    chain = tmp_path / "chain.genotype.json"
    save_genotype(random_chain_genotype(PROXYLESS_S2, "uniform", 0), chain)
    assert_refused(nasctl("latency", "predict", str(chain), "--table", str(table_path)),
                   "mbconv-chain genotype")


@pytest.mark.parametrize(("args", "needle"), [
    (["--runtime", "trt"], "trt"),
    (["--runtime", "nope"], "unknown runtime"),
    (["--precision", "int8"], "int8"),
    (["--space", "mbconv", "-C", "4"], "cell-space settings"),
    (["--ops", "sep_conv_3x3,bogus"], "bogus"),
])
def test_table_bad_input_refused(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_refused(nasctl("latency", "table", "--out", str(tmp_path / "t.json"), *args), needle)
