"""`nasctl validate` and friends through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli import assert_refused, in_process, nasctl

from nasctl.genotypes import from_darts, load_genotype, read_genotype, to_darts, write_genotype


def test_validate_all_json_has_a_status_for_every_zoo_genotype() -> None:
    proc = nasctl("validate", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 11
    by_name = {r["name"]: r for r in rows}
    assert by_name["DARTS_V1"]["status"] == "explained"
    assert by_name["FairDARTS_a"]["status"] == "explained"
    assert by_name["FairDARTS_a"]["macs"] == 371_455_200
    assert by_name["FairDARTS_a"]["params_with_aux"] == 2_837_208
    assert by_name["DARTS_V2"]["status"] == "pass" and by_name["DARTS_V2"]["params"] == 3_349_342
    assert {r["status"] for r in rows} <= {"pass", "explained"}
    for row in rows:
        assert all(isinstance(row[k], int) for k in ("params", "params_with_aux", "macs"))


def test_a_tampered_genotype_under_a_zoo_name_fails_with_exit_1(tmp_path: Path) -> None:
    darts = to_darts(load_genotype("DARTS_V2"))
    tampered = darts._replace(normal=[("sep_conv_5x5", src) for _op, src in darts.normal])
    write_genotype(from_darts(tampered, name="DARTS_V2"), tmp_path / "g.json")
    proc = nasctl("validate", str(tmp_path / "g.json"), "--json")
    assert proc.returncode == 1
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "fail"


def test_unknown_architecture_gets_counts_and_no_reference(tmp_path: Path) -> None:
    darts = to_darts(load_genotype("DARTS_V2"))
    other = darts._replace(reduce=[("avg_pool_3x3", src) for _op, src in darts.reduce])
    write_genotype(from_darts(other, name="mine"), tmp_path / "mine.json")
    proc = nasctl("validate", str(tmp_path / "mine.json"))
    assert proc.returncode == 0, proc.stderr
    assert "no-reference" in proc.stdout and "mine" in proc.stdout


def test_imagenet_validation_explains_darts_v2() -> None:
    proc = nasctl("validate", "DARTS_V2", "PDARTS", "--dataset", "imagenet", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["DARTS_V2"]["status"] == "explained" and rows["PDARTS"]["status"] == "pass"
    assert rows["PDARTS"]["macs"] == 542_819_328


def test_genotype_commands_round_trip(tmp_path: Path) -> None:
    text = nasctl("genotypes", "show", "PDARTS", "--format", "darts").stdout.strip()
    assert text.startswith("Genotype(normal=[('skip_connect', 0)")
    assert nasctl("genotypes", "import", text, "--out", str(tmp_path / "p.json"),
                "--name", "PDARTS").returncode == 0
    for fmt, suffix in [("nni", ".json"), ("fairdarts", ".txt"), ("graphml", ".graphml")]:
        out = tmp_path / f"p_{fmt}{suffix}"
        proc = nasctl("genotypes", "convert", str(tmp_path / "p.json"), "--out", str(out),
                    "--format", fmt)
        assert proc.returncode == 0, proc.stderr
    back = nasctl("genotypes", "convert", str(tmp_path / "p_nni.json"), "--out",
                str(tmp_path / "back.json"))
    assert back.returncode == 0
    assert nasctl("validate", str(tmp_path / "back.json"), "--json").returncode == 0
    back_cells = read_genotype(tmp_path / "back.json").cells_data()
    assert back_cells == load_genotype("PDARTS").cells_data()


def test_draw_writes_png_and_svg(tmp_path: Path) -> None:
    for suffix in (".png", ".svg"):
        out = tmp_path / f"cells{suffix}"
        proc = nasctl("genotypes", "draw", "FairDARTS_a", "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_size > 5000
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "sep_conv_5x5" in out.read_text()


def test_env_json_lists_runtimes() -> None:
    proc = nasctl("env", "--json")
    info = json.loads(proc.stdout)
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]
    trt = info["tensorrt"]
    assert trt.startswith(("not installed", "unusable")) or trt[0].isdigit()


def test_validate_is_honest_about_what_it_compared(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # another dataset's card is not comparable: no fail, no exit 1
    proc = in_process(capsys, "validate", "DARTS_V2", "--dataset", "cifar100", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "no-reference" and "no cifar100 figures" in row["note"]
    # a name given twice is counted once
    proc = in_process(capsys, "validate", "--all", "DARTS_V2", "--json")
    assert [r["name"] for r in json.loads(proc.stdout)].count("DARTS_V2") == 1
    # a pipe is refused at once instead of blocking forever
    fifo = tmp_path / "g.json"
    os.mkfifo(fifo)
    assert_refused(in_process(capsys, "validate", str(fifo)), str(fifo), "is a pipe")


def test_validate_table_never_truncates_a_number(tmp_path: Path) -> None:
    genotype = load_genotype("DARTS_V2")
    genotype.name = "A_really_long_genotype_name_from_a_search_run_2026_12_03_seed_7"
    write_genotype(genotype, tmp_path / "long.json")
    proc = subprocess.run([sys.executable, "-m", "nasctl", "validate",
                           str(tmp_path / "long.json")], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "3,349,342" in proc.stdout and "547,473,024" in proc.stdout
