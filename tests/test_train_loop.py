"""The training loop on tiny real networks: checkpoints, exact resume, divergence."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli import assert_refused, in_process
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.errors import NasctlError, TrainingDiverged
from nasctl.runs import EpochDone, load_checkpoint
from nasctl.train import load_model, resolve_config, train

ROOT = Path(__file__).resolve().parents[1]
TINY = {"channels": 4, "layers": 3, "batch_size": 8, "epochs": 2, "steps_per_epoch": 3,
        "eval_batches": 2, "deterministic": True, "log_every": 2}
TIMING = {"time_s", "images_per_s"}


def _tiny(**extra: object):
    return resolve_config("digits", overrides={**TINY, **extra})[0]


class _Stop(Exception):
    pass


def _metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_interrupted_run_resumes_exactly(tmp_path: Path) -> None:
    cfg = _tiny()
    full = train("DARTS_V2", cfg, tmp_path / "full", recipe="digits")

    def stop_after_first_epoch(event: object) -> None:
        if isinstance(event, EpochDone) and event.epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train("DARTS_V2", cfg, tmp_path / "cut", recipe="digits",
              on_event=stop_after_first_epoch)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    # continue through the CLI, as a user would
    result = CliRunner().invoke(app, ["train", "--resume", "--out", str(tmp_path / "cut"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resumed_from_epoch"] == 1

    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["scheduler"] == b["scheduler"]
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "cut")
    assert full.final["test_top1"] == b["metrics"]["test_top1"]


def test_checkpoint_layout_and_schedules(tmp_path: Path) -> None:
    cfg = _tiny(drop_path=0.2, epochs=2)
    train("DARTS_V2", cfg, tmp_path / "run", recipe="digits")
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    for key in ("model", "genotype", "network", "optimizer", "scheduler", "epoch", "rng",
                "config", "metrics", "best"):
        assert key in ckpt
    assert ckpt["network"] == {"dataset": "digits", "C": 4, "layers": 3, "num_classes": 10,
                               "auxiliary": True, "drop_path_on": "edge"}
    assert ckpt["genotype"]["name"] == "DARTS_V2"
    records = _metrics(tmp_path / "run")
    assert [r["drop_path"] for r in records] == [0.0, 0.1]  # ramped linearly per epoch
    assert records[0]["lr"] == pytest.approx(cfg.lr)
    assert records[1]["lr"] == pytest.approx(cfg.lr / 2)  # cosine over 2 epochs
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["recipe"] == "digits" and config["seed"] == 0
    assert config["versions"]["torch"] == torch.__version__
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["best"]["epoch"] == best["epoch"]
    # the runnable example loads it into plain PyTorch
    net, _ = load_model(tmp_path / "run" / "last.pt")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "load_checkpoint.py"),
                          str(tmp_path / "run" / "last.pt")], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    shown = json.loads(out.stdout)
    from nasctl.data import get_dataset

    test = get_dataset("digits", "test")
    images = torch.stack([test[i][0] for i in range(32)])
    with torch.no_grad():
        assert shown["predictions"] == net(images).argmax(1).tolist()


def test_existing_run_needs_resume_and_resume_keeps_settings(tmp_path: Path) -> None:
    cfg = _tiny(epochs=1)
    train("DARTS_V2", cfg, tmp_path / "run")
    with pytest.raises(NasctlError, match="already holds a training run"):
        train("DARTS_V2", cfg, tmp_path / "run")
    with pytest.raises(NasctlError, match="cannot change lr"):
        train(None, _tiny(epochs=1, lr=0.5), tmp_path / "run", resume=True)
    with pytest.raises(NasctlError, match="different genotype"):
        train("DARTS_V1", cfg, tmp_path / "run", resume=True)
    with pytest.raises(NasctlError, match="nothing to resume"):
        train(None, cfg, tmp_path / "empty", resume=True)


def test_resume_refuses_a_complete_run_and_another_runs_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _tiny(epochs=1)
    train("DARTS_V2", cfg, tmp_path / "a")
    train("DARTS_V1", cfg, tmp_path / "b")
    report = (tmp_path / "a" / "report.json").read_bytes()
    assert_refused(in_process(capsys, "train", "--resume", "--out", str(tmp_path / "a")),
                   "is a complete run (1 of 1 epochs); nothing to resume")
    assert (tmp_path / "a" / "report.json").read_bytes() == report
    shutil.copy(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")  # another run's
    assert_refused(in_process(capsys, "train", "--resume", "--out", str(tmp_path / "b")),
                   "last.pt was not written by the run recorded in")


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # epoch 1 trains normally; the schedule then multiplies the lr by 1e30
    cfg = _tiny(epochs=3, lr_schedule="exponential", lr_gamma=1e30, grad_clip=0.0,
                auxiliary_weight=0.0)
    with pytest.raises(TrainingDiverged, match="epoch 2: training diverged"):
        train("DARTS_V2", cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    assert math.isfinite(ckpt["metrics"]["train_loss"])


FAULTS = ROOT / "tests" / "faults.py"
TRAIN = ["train", "DARTS_V2", "--recipe", "digits", "-C", "4", "--layers", "3",
         "--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "2", "--eval-batches", "1",
         "--deterministic", "--device", "cpu"]


def _faulty(kill_at: int, count: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FAULTS), str(kill_at), str(count), "--", *args,
                           "--json"], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_a_run_killed_at_every_write_point_resumes_to_the_same_result(tmp_path: Path) -> None:
    count = tmp_path / "writes"
    ref = _faulty(0, count, *TRAIN, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    writes = int(count.read_text())
    assert writes >= 5  # genotype, config, last.pt, [best.pt], metrics, report
    reference = load_checkpoint(tmp_path / "ref" / "last.pt")
    for kill_at in range(1, writes + 1):
        out = tmp_path / f"cut{kill_at}"
        killed = _faulty(kill_at, count, *TRAIN, "--out", str(out))
        assert killed.returncode == -9, (kill_at, killed.stderr)
        if (out / "config.json").exists():
            done = _faulty(0, count, "train", "--resume", "--out", str(out))
        else:  # nothing recorded yet: nothing to resume, and the folder takes a fresh run
            refused = subprocess.run([sys.executable, "-m", "nasctl", "train", "--resume",
                                      "--out", str(out)], capture_output=True, text=True)
            assert refused.returncode == 2 and "nothing to resume" in refused.stderr
            done = _faulty(0, count, *TRAIN, "--out", str(out))
        assert done.returncode == 0, (kill_at, done.stderr)
        last = load_checkpoint(out / "last.pt")
        for key, value in reference["model"].items():
            assert torch.equal(value, last["model"][key]), (kill_at, key)
        assert _metrics(out) == _metrics(tmp_path / "ref"), kill_at
        best = load_checkpoint(out / "best.pt")
        assert best["epoch"] == last["best"]["epoch"], kill_at
