"""Export with only what the user has: a CIFAR-10 checkpoint exports to fp32 and fp16 on a
machine without the CIFAR folder (parity on images of the right shape, the report saying
accuracy was not measured and why); int8 without calibration images is one line naming
--calib-data; image counts larger than the source are refused with the limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli import assert_refused, in_process

from nasctl.deploy.report_types import ExportReport
from nasctl.export.source import load_model_source
from nasctl.genotypes.io import genotype_to_dict

QUICK = ["--exporter", "torchscript", "--runtimes", "torch,ort", "--latency-runs", "2",
         "--threads", "1"]


@pytest.fixture(scope="module")
def cifar_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny "trained" CIFAR-10 checkpoint (realistic BatchNorms, as training leaves them)."""
    source = load_model_source("DARTS_V2", channels=4, layers=3)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"format": "nasctl-checkpoint", "version": 1, "kind": "train",
                "genotype": genotype_to_dict(source.genotype),
                "network": {"dataset": "cifar10", "C": 4, "layers": 3, "num_classes": 10,
                            "auxiliary": False, "drop_path_on": "edge"},
                "model": source.net.state_dict(), "epoch": 1}, path)
    return path


def test_a_cifar_checkpoint_exports_fp32_and_fp16_without_the_cifar_folder(
        cifar_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    proc = in_process(capsys, "export", str(cifar_checkpoint), "--fp16", "--samples", "4",
                      *QUICK, "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    data = report["parity_data"]
    assert data["source"] == "digits" and data["images"] == 4 and not data["labelled"]
    assert not data["accuracy_judged"]
    assert "no cifar10 test images here (pass --data-dir)" in data["accuracy_not_measured"]
    assert any(n.startswith("accuracy not measured: no cifar10") for n in report["notes"])
    rows = {(r["runtime"], r["precision"]): r for r in report["runtimes"]}
    assert rows[("ort", "fp16")]["parity"]["status"] == "pass"
    assert rows[("ort", "fp16")]["parity"]["accuracy"] is None
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx").is_file()
    # every part of the report reads back typed, and writes the same document again
    typed = ExportReport.from_dict(report)
    assert typed.parity_data.accuracy_not_measured == data["accuracy_not_measured"]
    assert typed.onnx.export is not None and typed.onnx.export.opset == 18
    assert typed.model.channels == 4 and typed.compute_floor.floor_ms > 0
    assert json.loads(json.dumps(typed.to_dict())) == report


@pytest.mark.parametrize(("flags", "needles"), [
    (["--int8"], ("int8 needs calibration images", "--calib-data")),
    (["--samples", "100000"], ("--samples 100000 is more than the 360 images",)),
    (["--int8", "--calib-data", "digits", "--calib-images", "100000"],
     ("--calib-images 100000 is more than the", "digits train split")),
], ids=["int8-no-calibration", "samples-too-many", "calib-images-too-many"])
def test_what_the_user_does_not_have_is_one_line_and_nothing_written(
        cifar_checkpoint: Path, tmp_path: Path, flags: list[str], needles: tuple[str, ...],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    assert_refused(in_process(capsys, "export", str(cifar_checkpoint), *flags, *QUICK,
                              "-o", str(out)), *needles)
    assert not out.exists()


def test_int8_calibrates_on_the_images_given_and_reports_their_true_count(
        cifar_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "calib" / "any"
    folder.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (40 * i, 90, 200)).save(folder / f"{i}.png")
    proc = in_process(capsys, "export", str(cifar_checkpoint), "--int8", "--calib-data",
                      str(tmp_path / "calib"), "--samples", "4", *QUICK,
                      "-o", str(tmp_path / "e"), "--json")
    assert proc.returncode in (0, 1), proc.stderr  # 3 flat images calibrate poorly
    record = next(a for a in json.loads(proc.stdout)["artifacts"] if a["precision"] == "int8")
    assert record["status"] == "pass"
    assert record["details"]["calibration"]["images"] == 3  # up to 256: all it has, not 256
