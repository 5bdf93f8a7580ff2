"""benchmarks/gpu_check.py --smoke: every stage runs on CPU at tiny sizes (or says why it
cannot), records real figures, and the JSON is complete."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STAGES = ["env", "search_step", "arch_grad_cosine", "host_syncs", "train", "tf32",
          "process_group", "export"]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_smoke_run_records_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    stages = doc["stages"]
    assert list(stages) == STAGES
    assert doc["smoke"] is True and doc["device"] == "cpu"
    for name in ("host_syncs", "tf32"):  # CUDA-only: skipped, with the reason
        assert stages[name]["status"] == "skipped" and "CUDA" in stages[name]["reason"]
    for name in set(STAGES) - {"host_syncs", "tf32"}:
        assert stages[name]["status"] == "ok", (name, stages[name])
        assert _number(stages[name]["seconds"])

    env_info = stages["env"]
    assert env_info["torch"] and "CPUExecutionProvider" in env_info["onnxruntime_providers"]
    assert isinstance(env_info["tensorrt_imports"], bool) and env_info["driver"]

    rows = stages["search_step"]["rows"]
    assert [(r["method"], r["amp"], r["channels_last"]) for r in rows] == [
        *(("fairdarts", amp, cl) for amp in ("off", "bf16", "fp16") for cl in (False, True)),
        ("darts unrolled", "off", True), ("darts unrolled", "fp16", True)]
    for r in rows:
        assert "error" not in r, r
        assert _number(r["ms_per_step"]) and r["ms_per_step"] > 0
        assert _number(r["peak_mb"]) and r["peak_mb"] > 0
        assert r["alphas_finite"] is True

    cosines = stages["arch_grad_cosine"]["rows"]
    assert {(r["method"], r["amp"]) for r in cosines} == {
        (m, a) for m in ("fairdarts", "darts") for a in ("bf16", "fp16")}
    for r in cosines:  # reduced precision points the architecture gradient the same way
        assert _number(r["cosine"]) and 0.9 < r["cosine"] <= 1.0 + 1e-6, r
        assert _number(r["loss_scale"]) and r["loss_scale"] >= 1

    train = {r["amp"]: r for r in stages["train"]["rows"]}
    assert _number(train["off"]["images_per_s"]) and train["off"]["images_per_s"] > 0
    assert train["off"]["steps"] == 4 and _number(train["off"]["train_loss"])
    assert "CUDA" in train["bf16"]["skipped"] and "CUDA" in train["fp16"]["skipped"]

    group = stages["process_group"]
    assert group["backend"] == "gloo" and group["all_reduce_correct"] is True
    assert _number(group["init_s"]) and _number(group["all_reduce_ms"])

    export = stages["export"]
    assert export["passed"] is True
    by_runtime = {r["runtime"]: r for r in export["rows"]}
    assert by_runtime["ort"]["parity"] == "pass" and _number(by_runtime["ort"]["latency_ms"])
    assert _number(by_runtime["ort"]["max_abs"])
    for name in ("torch-cuda", "ort-cuda"):  # the CUDA rows are there, and say why not
        assert by_runtime[name]["parity"] == "unavailable" and by_runtime[name]["reason"]

    assert "== search_step: ok" in proc.stdout and "darts unrolled" in proc.stdout
