"""ONNX export, model sources and the TensorRT guard, on a tiny DARTS_V2 (C=4, 3 cells)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from nasctl.deploy.inputs import sample_images
from nasctl.errors import BackendUnavailable, CheckpointError
from nasctl.export.onnx_export import ExportError, export_onnx, read_metadata
from nasctl.export.source import ModelSource, load_model_source
from nasctl.export.tensorrt import require_tensorrt, tensorrt_unavailable_reason
from nasctl.genotypes.io import genotype_to_dict

TINY = {"channels": 4, "layers": 3}


@pytest.fixture(scope="module")
def tiny() -> ModelSource:
    return load_model_source("DARTS_V2", **TINY)


@pytest.fixture(scope="module")
def dynamo_export(tiny: ModelSource, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    meta = {"nasctl.genotype": "DARTS_V2", "nasctl.genotype_sha256": tiny.genotype.content_hash()}
    return export_onnx(tiny.net, path, tiny.input_shape, dynamic_batch=True, metadata=meta)


def _ort(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _torch(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_dynamo_export_is_checked_lean_and_carries_metadata(dynamo_export, tiny) -> None:
    assert dynamo_export.exporter == "dynamo" and dynamo_export.fallback_reason is None
    model = onnx.load(dynamo_export.path)
    onnx.checker.check_model(model, full_check=True)
    assert not dynamo_export.stray_ops
    # every BatchNorm that follows a Conv was folded into it; only BNs after a Concat
    # (FactorizedReduce) are left
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            assert producers.get(node.input[0]) != "Conv"
    meta = read_metadata(dynamo_export.path)
    assert meta["nasctl.genotype_sha256"] == tiny.genotype.content_hash()
    assert meta["nasctl.exporter"] == "dynamo"
    assert model.opset_import[0].version == dynamo_export.opset


def test_dynamic_batch_runs_any_batch_and_matches_torch(dynamo_export, tiny) -> None:
    session = _ort(dynamo_export.path)
    assert session.get_inputs()[0].shape[0] == "batch"
    x = sample_images(5, 32, tiny.mean, tiny.std)
    for batch in (1, 5):
        (out,) = session.run(None, {"input": x[:batch]})
        np.testing.assert_allclose(out, _torch(tiny.net, x[:batch]), rtol=1e-3, atol=1e-4)


def test_torchscript_exporter_is_cleaned_to_the_same_graph(tiny, dynamo_export,
                                                           tmp_path: Path) -> None:
    result = export_onnx(tiny.net, tmp_path / "ts.onnx", tiny.input_shape,
                         exporter="torchscript")
    assert result.exporter == "torchscript" and not result.stray_ops
    assert result.op_counts["Conv"] == dynamo_export.op_counts["Conv"]
    x = sample_images(3, 32, tiny.mean, tiny.std)
    outs = [_ort(result.path).run(None, {"input": x[i:i + 1]})[0] for i in range(3)]
    np.testing.assert_allclose(np.concatenate(outs), _torch(tiny.net, x), rtol=1e-3, atol=1e-4)


class _DataDependent(nn.Module):
    """torch.export refuses a Python branch on a tensor value; tracing records one path."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.mean() > 0:
            return y * 2
        return y - 1


def test_falls_back_to_torchscript_and_says_why(tmp_path: Path) -> None:
    result = export_onnx(_DataDependent().eval(), tmp_path / "m.onnx", (3, 8, 8))
    assert result.exporter == "torchscript"
    assert result.fallback_reason and "data-dependent" in result.fallback_reason
    assert read_metadata(result.path)["nasctl.exporter"] == "torchscript"


def test_export_failure_is_one_clear_error_and_prints_nothing(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    class NoOnnxOp(nn.Module):  # no ONNX symbolic for SVD
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(x.flatten(2))[1]

    with pytest.raises(ExportError, match="aten::linalg_svd"):
        export_onnx(NoOnnxOp().eval(), tmp_path / "m.onnx", (3, 4, 4), exporter="torchscript")
    assert not (tmp_path / "m.onnx").exists()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def _checkpoint(tiny: ModelSource, path: Path, **network: object) -> None:
    from nasctl.nets import build_network

    net = build_network(tiny.genotype, dataset="cifar10", C=4, layers=3, auxiliary=True)
    torch.save({"genotype": genotype_to_dict(tiny.genotype),
                "network": {"dataset": "cifar10", "C": 4, "layers": 3, "num_classes": 10,
                            "auxiliary": True, **network},
                "model": net.state_dict(), "epoch": 3}, path)


def test_checkpoint_loads_without_the_auxiliary_head(tiny, tmp_path: Path) -> None:
    _checkpoint(tiny, tmp_path / "ck.pt")
    source = load_model_source(tmp_path / "ck.pt")
    assert source.kind == "checkpoint" and source.trained
    assert source.dropped_keys and all(k.startswith("auxiliary_head.") for k in
                                       source.dropped_keys)
    assert not any(k.startswith("auxiliary_head.") for k in source.net.state_dict())
    saved = torch.load(tmp_path / "ck.pt", weights_only=True)["model"]
    for key, value in source.net.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not source.net.training


def test_checkpoint_problems_are_clear_errors(tiny, tmp_path: Path) -> None:
    _checkpoint(tiny, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="trained with C=4"):
        load_model_source(tmp_path / "ck.pt", channels=8)
    _checkpoint(tiny, tmp_path / "wrong.pt", C=8)  # weights of C=4 under a C=8 description
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model_source(tmp_path / "wrong.pt")
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="missing genotype, network"):
        load_model_source(tmp_path / "bare.pt")


def test_random_weights_are_reproducible_with_real_batchnorm_statistics() -> None:
    a = load_model_source("FairDARTS_a", **TINY)
    b = load_model_source("FairDARTS_a", **TINY)
    for (name, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name
    bn = next(m for m in a.net.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))


@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT is installed")
def test_tensorrt_missing_is_reported_not_crashed() -> None:
    reason = tensorrt_unavailable_reason()
    assert reason is not None and "not installed" in reason
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        require_tensorrt()


@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT is installed")
def test_cli_trt_without_tensorrt_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "nasctl", "export", "DARTS_V2", "--onnx",
                           "--trt", "--out", str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0]
    assert not (tmp_path / "e").exists()
