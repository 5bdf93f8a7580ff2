"""`nasctl eval` on a real tiny checkpoint, and bad input to `train` / `eval` (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli import assert_refused, nasctl
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.data import get_dataset
from nasctl.train import load_model, resolve_config, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg, _ = resolve_config("digits", overrides={"channels": 4, "layers": 3, "batch_size": 16,
                                                  "epochs": 1, "steps_per_epoch": 4,
                                                  "eval_batches": 1})
    out = tmp_path_factory.mktemp("train") / "run"
    train("DARTS_V2", cfg, out, recipe="digits")
    return out / "best.pt"




def test_eval_reports_the_checkpoints_accuracy(checkpoint: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(checkpoint), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == "digits" and report["samples"] == 360
    # recompute independently: plain model, whole test split, one batch
    net, _ = load_model(checkpoint)
    test = get_dataset("digits", "test")
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    with torch.no_grad():
        logits = net(images)
    top1 = 100.0 * (logits.argmax(1) == labels).float().mean().item()
    top5 = 100.0 * (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert report["top1"] == pytest.approx(top1)
    assert report["top5"] == pytest.approx(top5)
    assert report["loss"] == pytest.approx(loss, rel=1e-4)
    table = CliRunner().invoke(app, ["eval", str(checkpoint), "--eval-batches", "1"])
    assert table.exit_code == 0 and "top-5" in table.stdout


def test_missing_genotype_is_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("train", str(tmp_path / "missing.genotype.json"), "--out",
                         str(tmp_path / "run")), "missing.genotype.json")
    assert not (tmp_path / "run").exists()


def test_class_count_mismatch_is_refused(checkpoint: Path) -> None:
    assert_refused(nasctl("eval", str(checkpoint), "--dataset", "cifar100"),
                    "10 classes", "cifar100 has 100")


def test_corrupt_and_truncated_checkpoints_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 100)
    truncated = tmp_path / "truncated.pt"
    data = checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (corrupt, truncated):
        assert_refused(nasctl("eval", str(path)), str(path), "corrupt or truncated")
    assert_refused(nasctl("eval", str(tmp_path / "absent.pt")), "no such checkpoint")


def test_bad_training_settings_are_refused(tmp_path: Path) -> None:
    assert_refused(nasctl("train", "DARTS_V2", "--out", str(tmp_path / "a"), "--set", "epoch=3"),
                    "unknown setting 'epoch'")
    yaml_cfg = tmp_path / "cfg.yaml"
    yaml_cfg.write_text("epochs: 1\n")
    proc = nasctl("train", "DARTS_V2", "--out", str(tmp_path / "b"), "--config", str(yaml_cfg),
                "--set", "layers=2")
    if proc.returncode == 2 and "PyYAML" in proc.stderr:
        assert_refused(proc, "cfg.yaml", "PyYAML")
    else:
        assert_refused(proc, "layers must be >= 3")
    assert_refused(nasctl("train", "--resume", "--out", str(tmp_path / "c")), "nothing to resume")


def test_train_progress_is_one_stderr_line_per_epoch_off_a_terminal(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nasctl", "train", "DARTS_V2", "--recipe", "digits", "-C", "4",
         "--layers", "3", "--epochs", "2", "--steps-per-epoch", "1", "--eval-batches", "1",
         "--device", "cpu", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    epochs = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], proc.stderr
    assert all("test loss" in line and "images)" in line for line in epochs)  # not wrapped
    assert "epoch 1/2" not in proc.stdout and "training finished" in proc.stdout
    assert "test images" in proc.stdout  # the final figures say what they were computed on
