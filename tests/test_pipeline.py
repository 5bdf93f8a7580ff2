"""The README's main job, `nasctl pipeline`, end to end with tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

from cli import nasctl

TINY = ["--search-epochs", "1", "--search-steps", "2", "--train-epochs", "1",
        "--train-steps", "3"]



def test_pipeline_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "p"
    proc = nasctl("pipeline", "--out", str(out), "--json", *TINY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["passed"] and summary["counts_agree"]
    assert summary["parity"]["ort"] == "pass"
    for stage in ("search", "train", "export"):
        assert (out / stage / "report.json").exists()
    assert (out / "search" / "genotype.json").exists() and (out / "train" / "best.pt").exists()
    assert (out / "export" / "model.onnx").stat().st_size > 1000
    assert summary["params"] > 0 and summary["macs"] > 0 and summary["latency_ms"] > 0

    again = nasctl("pipeline", "--out", str(out), "--json", "--resume", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["seconds"] == {}  # every stage was already complete

    refused = nasctl("pipeline", "--out", str(out), *TINY)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert "Traceback" not in refused.stderr
