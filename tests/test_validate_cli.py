"""`nasctl validate` and friends through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from cli import nasctl

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
