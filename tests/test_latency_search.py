"""A search against a latency target, through the real CLI on a tiny network: the report
gives target, prediction and measurement; every table problem is one line and exit 2.
The table is synthetic (priced from MACs) but keyed as this machine's, so the found
network is really exported and timed here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli import in_process

from nasctl.genotypes import read_genotype

TINY_DEPLOY = ["--deploy-dataset", "digits", "--deploy-channels", "4", "--deploy-layers", "3"]
PROXY = ["search", "--dataset", "digits", "-C", "4", "--layers", "3", "--batch-size", "8",
         "--steps-per-epoch", "3", "--epochs", "2", "--device", "cpu", "--arch-lr", "0.1"]
TINY = [*PROXY, *TINY_DEPLOY]


def _table(path: Path, **key_changes: Any) -> Path:
    """A synthetic table of the tiny cell network, keyed as measured here (or with
    ``key_changes``, as measured elsewhere)."""
    from nasctl.atomic import write_json
    from nasctl.genotypes.spaces import DARTS_OPS
    from nasctl.latency.build import environment_keys
    from nasctl.latency.measure import MeasureSettings
    from nasctl.latency.table import Entry, LatencyTable
    from nasctl.nets.cell_units import CellDeployment
    from nasctl.search.macs import conv_fc_macs

    deployment = CellDeployment(DARTS_OPS, "digits", 4, 3)
    entries = {}
    for unit in deployment.catalogue():
        ms = 0.002 + conv_fc_macs(unit) * 2e-8
        entries[unit.key] = Entry(ms, ms, ms, ms, 0, "fitted")
    keys = {**environment_keys(MeasureSettings(), deployment.settings), **key_changes}
    write_json(path, LatencyTable(keys, entries).to_dict())
    return path


def _refused(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_a_search_aims_at_the_target_and_reports_prediction_and_measurement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _table(tmp_path / "t.json")
    free = in_process(capsys, *TINY, "--latency-table", str(table), "--json", "-o",
                str(tmp_path / "free"))
    assert free.returncode == 0, free.stderr
    (latency,) = [c for c in json.loads(free.stdout)["costs"] if c["cost"] == "latency"]
    assert latency["target"] is None and latency["predicted"] > 0
    target = 0.9 * latency["predicted"]  # below what the search found without one
    out = tmp_path / "aimed"
    aimed = in_process(capsys, *TINY, "--latency-table", str(table), "--latency-target",
                 str(target), "--json", "-o", str(out))
    assert aimed.returncode == 0, aimed.stderr
    summary = json.loads(aimed.stdout)
    (latency,) = [c for c in summary["costs"] if c["cost"] == "latency"]
    assert latency["target"] == pytest.approx(target)
    assert latency["predicted"] <= target  # the repair's guarantee
    assert latency["measured"] > 0 and latency["error_pct"] is not None  # timed on ORT here
    assert latency["meets_target"] is (latency["measured"] <= 1.1 * target)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all({"expected", "predicted"} <= set(r["costs"]["latency"]) for r in records)
    provenance = read_genotype(out / "genotype.json").provenance["discretization"]
    assert provenance["latency_cost"]["latency_target"] == pytest.approx(target)
    repair = latency["repair"]
    if repair["swaps"]:
        assert provenance["latency_repair"]["swaps"] == repair["swaps"]
    assert (out / "costs.png").stat().st_size > 0


@pytest.mark.parametrize(("case", "needle"), [
    ("missing", "no such latency table"),
    ("foreign", "measured under other keys (device: 'another CPU' != "),
    ("other network", "but this search deploys the cell network on cifar10, C=36, 20 cells"),
    ("below the cheapest", "is below the cheapest network this space builds"),
])
def test_table_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     case: str, needle: str) -> None:
    args = list(TINY)
    target = "0.5"
    if case == "missing":
        table = tmp_path / "none.json"
    elif case == "foreign":
        table = _table(tmp_path / "t.json", device="another CPU")
    elif case == "other network":
        table = _table(tmp_path / "t.json")
        args = list(PROXY)  # deploys the default: the CIFAR-10 network
    else:
        table, target = _table(tmp_path / "t.json"), "0.000001"
    out = tmp_path / "run"
    _refused(in_process(capsys, *args, "--latency-table", str(table), "--latency-target", target,
                  "-o", str(out)), needle)
    assert not out.exists()


def test_a_foreign_table_is_used_when_allowed_and_not_measured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _table(tmp_path / "t.json", device="another CPU")
    run = in_process(capsys, *TINY, "--epochs", "1", "--latency-table", str(table),
               "--allow-foreign-table", "--json", "-o", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    (latency,) = [c for c in json.loads(run.stdout)["costs"] if c["cost"] == "latency"]
    assert latency["predicted"] > 0 and latency["measured"] is None


def test_the_pipeline_reuses_a_table_this_machine_measured(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from nasctl.genotypes.spaces import DARTS_OPS
    from nasctl.latency.cache import cache_path, cached_table
    from nasctl.latency.measure import MeasureSettings
    from nasctl.nets.cell_units import CellDeployment

    monkeypatch.setenv("NASCTL_CACHE", str(tmp_path / "cache"))
    deployment = CellDeployment(DARTS_OPS, "digits", 4, 3)
    path, keys = cache_path(deployment, MeasureSettings())
    assert path.is_relative_to(tmp_path / "cache") and keys["settings"]["C"] == 4
    path.parent.mkdir(parents=True)
    _table(path)  # as if measured here earlier
    table, reused = cached_table(deployment)
    assert reused and table.path == str(path)
    other, _keys = cache_path(CellDeployment(DARTS_OPS, "digits", 8, 3), MeasureSettings())
    assert other != path  # another network is another table
