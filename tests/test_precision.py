"""Precision as ONNX graphs: fp16 and Q/DQ int8 files made from a trained checkpoint,
each checked on ONNX Runtime CPU against PyTorch fp32 on labelled digits test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli import assert_refused, nasctl
from onnx import numpy_helper

from nasctl.deploy.runtimes import RUNTIMES, make_runtime
from nasctl.export.precision import parse_precisions
from nasctl.train import resolve_config, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg, _ = resolve_config("digits", overrides={"channels": 8, "layers": 3, "batch_size": 32,
                                                  "epochs": 1})
    out = tmp_path_factory.mktemp("train") / "run"
    train("DARTS_V2", cfg, out, recipe="digits")
    return out / "best.pt"


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export") / "e"
    proc = nasctl("export", str(checkpoint), "--onnx", "--precision", "fp32,fp16,int8",
                  "--runtimes", "torch,ort,trt", "--samples", "120", "--calib-images", "64",
                  "--latency-runs", "3", "--threads", "1", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    return out, json.loads(proc.stdout)


def test_every_precision_passes_on_ort_cpu(exported: tuple[Path, dict]) -> None:
    out, report = exported
    rows = {(r["runtime"], r["precision"]): r for r in report["runtimes"]}
    assert {("ort", p) for p in ("fp32", "fp16", "int8")} <= set(rows)
    assert ("torch", "fp16") not in rows  # torch eager on CPU is the fp32 reference only
    for precision in ("fp32", "fp16", "int8"):
        row = rows[("ort", precision)]
        assert row["parity"]["status"] == "pass", row
        assert row["exported"]["path"] == str(out / ("model.onnx" if precision == "fp32"
                                                     else f"model.{precision}.onnx"))
        assert row["latency"]["status"] == "pass"
        assert row["parity"]["samples"] == 120
    int8 = rows[("ort", "int8")]["parity"]
    assert abs(int8["accuracy_delta"]) <= 0.02 and int8["top1_agreement"] >= 0.9
    assert rows[("ort", "int8")]["settings"]["graph_optimization_level"] == "ORT_ENABLE_BASIC"
    assert rows[("ort", "fp32")]["settings"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert report["parity_data"]["accuracy_judged"] and not report["notes"]
    assert rows[("trt", "int8")]["parity"]["status"] == "unavailable"


def test_fp16_graph_is_half_inside_with_fp32_io(exported: tuple[Path, dict]) -> None:
    model = onnx.load(str(exported[0] / "model.fp16.onnx"))
    float_type = onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == float_type
    assert model.graph.output[0].type.tensor_type.elem_type == float_type
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)


def test_int8_graph_is_symmetric_qdq_with_per_channel_weights(
        exported: tuple[Path, dict]) -> None:
    model = onnx.load(str(exported[0] / "model.int8.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    zero_points = [inits[n.input[2]] for n in model.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2]
    assert zero_points and not any(z.any() for z in zero_points)  # symmetric: all 0
    # int8 everywhere but the conv biases, which Q/DQ keeps in int32
    assert {z.dtype for z in zero_points} == {np.dtype(np.int8), np.dtype(np.int32)}
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                   and inits.get(n.input[1]) is not None and inits[n.input[1]].ndim == 1
                   and inits[n.input[1]].size > 1]
    assert conv_weights and per_channel
    assert all(a.attribute[0].i == 0 for a in per_channel if a.attribute)  # axis 0


def test_bench_runs_a_given_int8_file_at_its_precision(exported: tuple[Path, dict]) -> None:
    proc = nasctl("bench", str(exported[0] / "model.int8.onnx"), "--backend", "ort", "--runs",
                  "2", "--warmup", "0", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["results"]
    assert row["precision"] == "int8" and row["status"] == "pass"
    assert row["settings"]["graph_optimization_level"] == "ORT_ENABLE_BASIC"


BENCH_REFUSALS = {
    "static batch": (["--batch", "1,8"], "--dynamic-batch"),
    "nothing measurable": (["--backend", "trt"], "nothing could be measured"),
    "zero runs": (["--runs", "0"], "--runs must be at least 1"),
    "negative warm-up": (["--warmup", "-1"], "--warmup must be at least 0"),
    "zero batch": (["--batch", "0"], "--batch sizes must be at least 1"),
    "batch not a number": (["--batch", "1,x"], "--batch must be comma-separated integers"),
    "unknown runtime": (["--backend", "ort,tpu"], "unknown runtime(s) tpu"),
}


@pytest.mark.parametrize("case", BENCH_REFUSALS)
def test_bench_refusals(case: str, exported: tuple[Path, dict]) -> None:
    args, needle = BENCH_REFUSALS[case]
    assert_refused(nasctl("bench", str(exported[0] / "model.onnx"), *args), needle)


def test_bench_refuses_a_garbage_onnx_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx model at all" * 50)
    assert_refused(nasctl("bench", str(garbage)), str(garbage), "not a valid ONNX file")


EXPORT_REFUSALS = {
    "unknown precision": (["--precision", "fp8"], "fp8"),
    "no ONNX": (["--no-onnx"], "--no-onnx leaves nothing to export"),
    "zero latency runs": (["--latency-runs", "0"], "--latency-runs must be at least 1"),
    "negative latency runs": (["--latency-runs", "-3"], "--latency-runs must be at least 1"),
    "zero samples": (["--samples", "0"], "--samples must be at least 1"),
    "zero calibration images": (["--calib-images", "0"], "--calib-images must be at least 1"),
    "unknown calibration": (["--calib-method", "bogus"], "--calib-method"),
    "unknown exporter": (["--exporter", "onnxscript"], "--exporter must be"),
    "unknown runtime": (["--runtimes", "ort,tpu"], "unknown runtime(s) tpu"),
    "zero channels": (["--C", "0"], "C must be >= 1, got 0"),
    "too few cells": (["--layers", "1"], "at least 3 cells"),
}


@pytest.mark.parametrize("case", EXPORT_REFUSALS)
def test_export_refusals(case: str, tmp_path: Path) -> None:
    args, needle = EXPORT_REFUSALS[case]
    out = tmp_path / "e"
    assert_refused(nasctl("export", "DARTS_V2", "-o", str(out), *args), needle)
    assert not out.exists()


def test_precisions_and_runtime_declarations() -> None:
    assert parse_precisions("int8, fp32,int8") == ("int8", "fp32")
    for name, cls in RUNTIMES.items():
        runtime = make_runtime(name, "fp16")
        if "fp16" not in cls.precisions:
            assert runtime.unavailable_reason() == f"runs {', '.join(cls.precisions)}, not fp16"


def test_the_precision_table_is_the_one_declaration(exported: tuple[Path, dict]) -> None:
    """Files, detection, tolerances and runtime support all come from one row each."""
    from nasctl.deploy.parity import tolerance_for
    from nasctl.export.onnx_export import describe_onnx_file
    from nasctl.export.precision import PRECISION_TABLE

    for row in PRECISION_TABLE.values():
        assert describe_onnx_file(exported[0] / row.graph_name()).precision == row.name
        assert tolerance_for(row.name) == row.tolerance
    assert RUNTIMES["ort"].precisions == RUNTIMES["trt"].precisions == tuple(PRECISION_TABLE)
    assert RUNTIMES["torch-cuda"].precisions == tuple(
        name for name, row in PRECISION_TABLE.items() if row.torch_dtype)


def test_fp16_conversion_clamps_tiny_weights_without_printing(tmp_path: Path) -> None:
    """Weights below fp16's range are clamped to 1e-7 (what the conversion is for) and the
    converter's warning about each is not passed on."""
    import warnings

    import torch

    from nasctl.export.onnx_export import export_onnx
    from nasctl.export.precision import make_precision_graph

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = 1e-12
    fp32 = export_onnx(net, tmp_path / "model.onnx", (3, 8, 8), exporter="torchscript")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_precision_graph(fp32.path, "fp16", tmp_path / "model.fp16.onnx")
    assert not [w for w in caught if "float32 number" in str(w.message)]
    weights = [numpy_helper.to_array(t) for t in onnx.load(tmp_path / "model.fp16.onnx")
               .graph.initializer if len(t.dims) == 4]
    assert weights[0].dtype == np.float16 and weights[0][0, 0, 0, 0] == np.float16(1e-7)
