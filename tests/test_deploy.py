"""Runtimes, parity, latency, ONNX-graph counting and the export report, on tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import nasctl
from torch import nn

from nasctl.deploy.artifacts import ExportSettings
from nasctl.deploy.bench import host_info, measure
from nasctl.deploy.onnx_count import count_onnx
from nasctl.deploy.parity import compare_outputs, tolerance_for
from nasctl.deploy.report import ExportOptions, export_and_check
from nasctl.deploy.runtimes import Artifacts, make_runtime
from nasctl.errors import BackendUnavailable, NasctlError
from nasctl.export.onnx_export import export_onnx
from nasctl.export.source import ModelSource, load_model_source
from nasctl.nets.counting import count_macs, count_params


@pytest.fixture(scope="module")
def tiny() -> ModelSource:
    return load_model_source("FairDARTS_a", channels=4, layers=3)


@pytest.fixture(scope="module")
def tiny_onnx(tiny: ModelSource, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("deploy") / "model.onnx"
    return export_onnx(tiny.net, path, tiny.input_shape, exporter="torchscript").path


# --- parity -------------------------------------------------------------------------------

def test_parity_passes_identical_and_reports_each_statistic() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 10))
    out = ref + rng.normal(scale=1e-6, size=ref.shape)
    result = compare_outputs(ref, out, tolerance_for("fp32"))
    assert result.passed and result.top1_agreement == 1.0 and result.violations == 0
    abs_err = np.abs(out - ref)
    assert result.max_abs == pytest.approx(abs_err.max())
    assert result.mean_abs == pytest.approx(abs_err.mean())
    assert result.p99_abs == pytest.approx(np.percentile(abs_err, 99))
    assert result.max_abs >= result.p99_abs >= result.mean_abs > 0


def test_parity_fails_on_one_bad_element_and_on_flipped_top1() -> None:
    ref = np.tile(np.linspace(-1, 1, 10), (20, 1))
    bad = ref.copy()
    bad[3, 4] += 0.02
    result = compare_outputs(ref, bad, tolerance_for("fp32"))
    assert not result.passed and result.violations == 1
    assert compare_outputs(ref, bad, tolerance_for("fp16")).passed  # within fp16's preset
    flipped = ref.copy()
    flipped[:2, 0] = 5.0  # two samples now predict class 0 instead of 9
    result = compare_outputs(ref, flipped, tolerance_for("int8", atol=10.0))
    assert result.top1_agreement == pytest.approx(0.9)
    assert result.passed  # int8 preset accepts 90% top-1 agreement ...
    assert not compare_outputs(ref, flipped, tolerance_for("int8", atol=10.0,
                                                           min_top1=0.95)).passed  # ... not 95
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert not compare_outputs(ref, nan, tolerance_for("int8")).passed


def test_tolerance_presets_loosen_with_precision() -> None:
    fp32, fp16, int8 = (tolerance_for(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.atol < fp16.atol < int8.atol and fp32.rtol < fp16.rtol < int8.rtol
    assert fp32.min_top1 > fp16.min_top1 > int8.min_top1
    with pytest.raises(NasctlError, match="unknown precision"):
        tolerance_for("fp8")


# --- counting on the ONNX graph ----------------------------------------------------------

class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)  # -> 8x4x4
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean((2, 3)))


def test_onnx_counts_match_hand_computed_figures(tmp_path: Path) -> None:
    net = _Small().eval()
    with torch.no_grad():  # a trained-looking BN (a fresh one folds to a zero bias, dropped)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.normal_()
        net.bn.running_mean.normal_()
    path = export_onnx(net, tmp_path / "s.onnx", (3, 8, 8), exporter="torchscript").path
    counts = count_onnx(path)
    conv = 8 * 4 * 4 * 3 * 9  # out elements x (C_in/groups) x k*k
    depthwise = 8 * 4 * 4 * 1 * 9
    fc = 8 * 5
    assert counts.macs_convfc == conv + depthwise + fc
    # the BN was folded into the first conv: 2 x 8 affine params became an 8-element bias
    assert counts.conv_bias == 8
    assert counts.params == 8 * 3 * 9 + 8 + 8 * 9 + 8 * 5 + 5
    assert counts.params_unfolded == sum(p.numel() for p in net.parameters())


def test_onnx_and_torch_counts_agree_on_a_darts_network(tiny: ModelSource, tiny_onnx: str) -> None:
    counts = count_onnx(tiny_onnx)
    assert counts.macs_convfc == count_macs(tiny.net, 32).convfc
    assert counts.params_unfolded == count_params(tiny.net).without_aux


# --- runtimes and latency ----------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("name", ["torch-cuda", "ort-cuda", "ort-trt", "trt"])
def test_gpu_runtimes_are_unavailable_with_a_reason(name: str) -> None:
    runtime = make_runtime(name)
    reason = runtime.unavailable_reason()
    assert reason
    with pytest.raises(BackendUnavailable, match=name):
        runtime.load(Artifacts())


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(BackendUnavailable, match="unknown runtime 'tflite'"):
        make_runtime("tflite")


def test_torch_and_ort_runtimes_agree(tiny: ModelSource, tiny_onnx: str) -> None:
    from nasctl.deploy.inputs import sample_images

    artifacts = Artifacts(net=tiny.net, onnx={"fp32": tiny_onnx})
    x = sample_images(1, 32, tiny.mean, tiny.std)
    outs = []
    for name in ("torch", "ort"):
        runtime = make_runtime(name, threads=1)
        runtime.load(artifacts)
        outs.append(runtime.run(x))
    assert compare_outputs(outs[0], outs[1], tolerance_for("fp32")).passed


def test_latency_statistics_are_consistent(tiny: ModelSource, tiny_onnx: str) -> None:
    runtime = make_runtime("ort", threads=1)
    runtime.load(Artifacts(onnx={"fp32": tiny_onnx}))
    x = np.zeros((1, 3, 32, 32), np.float32)
    stats = measure(runtime, x, warmup=2, runs=15)
    assert stats.runs >= 15 and stats.timer == "host-clock"
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.throughput == pytest.approx(1000.0 / stats.median_ms, rel=1e-2)
    info = host_info(1)
    assert info.versions["onnxruntime"] and info.threads["requested"] == 1


# --- the export report and the CLI ------------------------------------------------------

def test_export_report_has_parity_latency_and_counts(tiny: ModelSource, tmp_path: Path) -> None:
    options = ExportOptions(out_dir=str(tmp_path), settings=ExportSettings(exporter="torchscript"),
                            parity_samples=8, latency_runs=3, warmup=1, threads=1)
    typed = export_and_check(tiny, options)
    assert typed.validation.passed and typed.validation.onnx is not None
    assert [c.status for c in typed.validation.agreement] == ["pass", "pass"]
    report = typed.to_dict()
    assert report["passed"]
    assert list(report["validation"]) == ["torch", "onnx", "agreement", "paper"]
    assert list(report["validation"]["paper"]) == ["status", "card", "note"]
    assert json.loads((tmp_path / "report.json").read_text())["passed"]
    rows = {r["runtime"]: r for r in report["runtimes"]}
    assert set(rows) == {"torch", "ort", "ort-cuda", "ort-trt", "trt"}
    assert rows["ort"]["parity"]["status"] == "pass" and rows["ort"]["parity"]["samples"] == 8
    assert rows["ort"]["latency"]["status"] == "pass"
    assert rows["trt"]["exported"]["status"] == "unavailable"
    if not torch.cuda.is_available():
        assert rows["ort-cuda"]["parity"]["status"] == "unavailable"
    checks = {c["figure"]: c for c in report["validation"]["agreement"]}
    assert all(c["status"] == "pass" for c in checks.values())
    assert report["validation"]["paper"]["status"] == "not-comparable"  # C=4, 3 cells
    floor = report["compute_floor"]
    assert floor["macs"] == report["validation"]["torch"]["macs_convfc"] > 0
    assert floor["floor_ms"] == pytest.approx(floor["macs"] / floor["peak_macs_per_s"] * 1e3,
                                              rel=1e-3)
    assert rows["ort"]["latency"]["x_floor"] > 0


def test_cli_export_json_and_a_failed_parity_exits_1(tmp_path: Path) -> None:
    common = ["export", "DARTS_V2", "-C", "4", "--layers", "3", "--exporter", "torchscript",
              "--runtimes", "torch,ort", "--samples", "4", "--latency-runs", "2", "--threads",
              "1", "--json"]
    proc = nasctl(*common, "--out", str(tmp_path / "ok"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert report["passed"] and (tmp_path / "ok" / "model.onnx").exists()
    # zero tolerance: ORT's reassociated sums differ from eager in the last bits
    proc = nasctl(*common, "--atol", "0", "--rtol", "0", "--out", str(tmp_path / "strict"))
    assert proc.returncode == 1, proc.stderr
    ort_row = next(r for r in json.loads(proc.stdout)["runtimes"] if r["runtime"] == "ort")
    assert ort_row["parity"]["status"] == "failed" and ort_row["parity"]["violations"] > 0


def test_cli_bench_an_onnx_file(tiny_onnx: str) -> None:
    proc = nasctl("bench", tiny_onnx, "--backend", "ort,torch,trt", "--runs", "3", "--warmup",
                "1", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by_name = {r["runtime"]: r for r in doc["results"]}
    assert by_name["ort"]["status"] == "pass" and by_name["ort"]["batch"] == 1
    assert by_name["torch"]["status"] == "unavailable"  # an ONNX file has no torch model
    assert by_name["trt"]["status"] == "unavailable"
    assert doc["host"]["cpu"] and doc["host"]["versions"]["torch"]


def _narrow(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI off a terminal (a pipe, as in a log or CI) with 80 columns."""
    return subprocess.run([sys.executable, "-m", "nasctl", *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "COLUMNS": "80"})


def _table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell -> the lines of the table that start with a runtime name."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        first = line.split(" ", 1)[0]
        if first in ("torch", "ort", "ort-cuda", "ort-trt", "trt"):
            rows.setdefault(first, []).append(line)
    return rows


def test_cli_export_fits_80_columns_and_reports_each_stage_off_a_terminal(
        tmp_path: Path) -> None:
    proc = _narrow("export", "DARTS_V2", "-C", "4", "--layers", "3", "--exporter",
                   "torchscript", "--runtimes", "torch,ort,ort-cuda,ort-trt", "--samples", "4",
                   "--latency-runs", "2", "--threads", "1", "--out", str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    rows = _table_rows(proc.stdout)
    assert set(rows) == {"torch", "ort", "ort-cuda", "ort-trt"}, proc.stdout
    assert all(len(lines) == 1 for lines in rows.values()), proc.stdout  # no wrapped rows
    assert "n/a ort-trt: " in proc.stdout and "all checks passed" in proc.stdout
    stages = [line.split("] ", 1)[1] for line in proc.stderr.splitlines()]
    assert stages == ["export onnx", "runtime torch fp32", "runtime ort fp32",
                      "runtime ort-cuda fp32", "runtime ort-trt fp32", "counting"], proc.stderr


def test_cli_bench_fits_80_columns(tiny_onnx: str) -> None:
    proc = _narrow("bench", tiny_onnx, "--backend", "ort,ort-cuda,ort-trt", "--runs", "2",
                   "--warmup", "0", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    assert set(_table_rows(proc.stdout)) == {"ort", "ort-cuda", "ort-trt"}, proc.stdout
    assert "timing ort fp32 at batch 1" in proc.stderr
