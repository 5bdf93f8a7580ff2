"""Every export/bench value is checked before work starts, and a given ONNX file's input
contract (nasctl's metadata) is read under a strict schema: bad input exits 2 with one
line naming the flag or the entry and its bound, never a traceback, a huge allocation or
a figure that was not applied."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from cli import assert_refused, in_process

from nasctl.deploy.artifacts import onnx_metadata
from nasctl.export.onnx_export import export_onnx
from nasctl.export.source import load_model_source


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = load_model_source("DARTS_V2", channels=4, layers=3)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(source.net, path, source.input_shape, exporter="torchscript",
                metadata=onnx_metadata(source, dynamic_batch=False))
    return path


def _with_metadata(source: Path, out: Path, **changes: str | None) -> Path:
    """A copy of ``source`` whose nasctl metadata has ``changes`` (None: entry removed)."""
    model = onnx.load(str(source))
    meta = {p.key: p.value for p in model.metadata_props}
    for key, value in changes.items():
        name = "nasctl." + key
        if value is None:
            meta.pop(name, None)
        else:
            meta[name] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(out))
    return out


BAD_METADATA = [
    ({"input_shape": "1,3,32"}, "nasctl.input_shape '1,3,32' is not BATCH,3,SIZE,SIZE"),
    ({"input_shape": "1,3,120000,120000"}, "of 1 to 1024 pixels"),
    ({"input_shape": "1,3,32,31"}, "3 channels of a square image"),
    ({"mean": None}, "but no nasctl.mean"),
    ({"mean": "a,b,c"}, "nasctl.mean 'a,b,c' is not 3 finite numbers"),
    ({"std": "0.2,0,0.2"}, "nasctl.std '0.2,0,0.2' is not 3 positive numbers"),
    ({"std": "nan,1,1"}, "is not 3 positive numbers"),
]


@pytest.mark.parametrize(("changes", "needle"), BAD_METADATA,
                         ids=[str(c) for c, _n in BAD_METADATA])
def test_bench_reads_onnx_metadata_under_a_strict_schema(
        tiny_onnx: Path, tmp_path: Path, changes: dict[str, str | None], needle: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_metadata(tiny_onnx, tmp_path / "bad.onnx", **changes)
    assert_refused(in_process(capsys, "bench", str(path), "--backend", "ort"), str(path),
                   needle)


def test_bench_of_a_file_no_runtime_can_load_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Mystery", ["input"], ["logits"], domain="custom.ops")], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 10])])
    model = onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("custom.ops", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    assert_refused(in_process(capsys, "bench", str(tmp_path / "custom.onnx"), "--backend",
                              "ort", "--runs", "2"), "nothing could be measured", "Mystery")


def test_bench_of_a_file_with_two_inputs_is_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shape = [1, 3, 32, 32]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["input", "other"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape)
         for n in ("input", "other")],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, shape)])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]),
              str(tmp_path / "two.onnx"))
    assert_refused(in_process(capsys, "bench", str(tmp_path / "two.onnx"), "--backend", "ort",
                              "--runs", "2"), "has 2 inputs (input, other)")


BAD_BENCH = [
    (["--batch", "100000"], "--batch sizes must be at most 4096, not 100000"),
    (["--batch", "2,2,2"], "--batch gives 2 more than once"),
    (["--threads", "0"], "--threads must be at least 1, not 0"),
    (["--threads", "-3"], "--threads must be at least 1, not -3"),
    (["--precision", "int8"], "holds an fp32 graph and runs at that precision, not int8"),
    (["--fp16"], "not fp16"),
]


@pytest.mark.parametrize(("flags", "needle"), BAD_BENCH, ids=[" ".join(f) for f, _n in BAD_BENCH])
def test_bench_values_are_bounded(tiny_onnx: Path, flags: list[str], needle: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(in_process(capsys, "bench", str(tiny_onnx), *flags), needle)


BAD_EXPORT = [
    (["--atol", "-1"], "--atol must be at least 0 and finite, not -1.0"),
    (["--rtol", "nan"], "--rtol must be at least 0 and finite, not nan"),
    (["--min-top1", "2"], "--min-top1 must be at least 0 and at most 1, not 2.0"),
    (["--opset", "5"], "--opset must be at least 18, not 5"),
    (["--threads", "0"], "--threads must be at least 1, not 0"),
    (["--parity-data", "/nonexistent/images"],
     "--parity-data /nonexistent/images: no such image folder, and not a dataset"),
    (["--int8", "--calib-data", "/nonexistent/c"], "--calib-data /nonexistent/c: no such"),
    (["--parity-data", "digits", "--data-dir", "/tmp"],
     "digits ships inside nasctl: --data-dir does not apply"),
]


@pytest.mark.parametrize(("flags", "needle"), BAD_EXPORT,
                         ids=[" ".join(f) for f, _n in BAD_EXPORT])
def test_export_values_are_bounded(tmp_path: Path, flags: list[str], needle: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    assert_refused(in_process(capsys, "export", "DARTS_V2", *flags, "-o", str(out)), needle)
    assert not out.exists()


def test_bench_prints_a_table_not_python_values(tiny_onnx: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    proc = in_process(capsys, "bench", str(tiny_onnx), "--backend", "ort", "--runs", "2",
                      "--warmup", "0", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    host = next(line for line in proc.stdout.splitlines() if line.startswith("host: "))
    assert "{" not in host and "threads: torch " in host, host
