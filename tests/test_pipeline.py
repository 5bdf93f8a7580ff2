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
    # the search priced the network the train stage built: its MACs are the export's count
    search = json.loads((out / "search" / "report.json").read_text())
    (macs,) = [c for c in search["costs"] if c["cost"] == "macs"]
    assert macs["predicted"] == summary["macs"] and "digits, C=8, 5 cells" in macs["network"]
    assert (out / "export" / "model.onnx").stat().st_size > 1000
    assert summary["params"] > 0 and summary["macs"] > 0 and summary["latency_ms"] > 0
    # Two search steps leave every sigmoid near 0.5: the summary says the fallback chose the
    # cells, stderr says it once, and each stage announced itself there (stdout is the JSON).
    assert summary["search"]["fallback_cells"] == ["normal", "reduce"]
    assert summary["search"]["ops_above_threshold"] == 0 and summary["search"]["ops"] == 196
    assert proc.stderr.count("warning: no normal or reduce-cell op reached") == 1
    for stage in ("search", "train", "export"):
        assert f"{stage}: running" in proc.stderr
    assert "export: export onnx" in proc.stderr and "export: counting" in proc.stderr

    again = nasctl("pipeline", "--out", str(out), "--json", "--resume", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["seconds"] == {}  # every stage was already complete

    refused = nasctl("pipeline", "--out", str(out), *TINY)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_summary_says_when_the_threshold_chose_the_cells(tmp_path: Path) -> None:
    from nasctl.genotypes import load_genotype, write_genotype
    from nasctl.pipeline import summarize

    genotype = load_genotype("FairDARTS_a")
    genotype.provenance["discretization"] = {"threshold": 0.85, "discretization": "sparse"}
    (tmp_path / "search").mkdir()
    write_genotype(genotype, tmp_path / "search" / "genotype.json")
    last = {"normal": [[0.97, 0.02, 0.5]], "reduce": [[0.86, 0.15, 0.1]]}
    (tmp_path / "search" / "arch_history.json").write_text(json.dumps(
        {"history": [{"epoch": 0, "normal": [[0.5] * 3], "reduce": [[0.5] * 3]},
                     {"epoch": 2, **last}]}))
    search = summarize(tmp_path)["search"]
    assert search["fallback_cells"] == []
    assert (search["ops"], search["ops_above_threshold"],
            search["ops_below_1_minus_threshold"]) == (6, 2, 3)
    assert search["weight_range"] == [0.02, 0.97]
