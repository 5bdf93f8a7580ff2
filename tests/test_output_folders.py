"""Output folders lose nothing a user had: an export is built in a temporary sibling and
renamed into place whole, under the folder's lock; -o naming a file or someone else's
folder is refused before anything is written; SIGTERM is handled like Ctrl-C (nothing
half-written stays, the next run is not refused)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli import assert_refused, in_process

from nasctl.runs import release_lock, take_lock

EXPORT = ["export", "DARTS_V2", "-C", "4", "--layers", "3", "--exporter", "torchscript",
          "--runtimes", "torch,ort", "--samples", "4", "--latency-runs", "2", "--threads", "1"]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


@pytest.fixture(scope="module")
def earlier_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "e"
    proc = subprocess.run([sys.executable, "-m", "nasctl", *EXPORT, "-o", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_an_empty_out_is_not_the_current_folder(capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in Path.cwd().iterdir())
    assert_refused(in_process(capsys, *EXPORT, "-o", ""),
                   "a non-empty folder that is not a nasctl export folder")
    assert sorted(p.name for p in Path.cwd().iterdir()) == before


@pytest.mark.parametrize("case", ["a file", "a training run", "someone's folder"])
def test_export_refuses_an_out_that_is_not_its_own(tmp_path: Path, case: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t"
    if case == "a file":
        out.write_text("mine")
        needle = "exists and is not a folder"
    else:
        out.mkdir()
        name = "report.json" if case == "a training run" else "notes.txt"
        (out / name).write_text(json.dumps({"best_top1": 90.0}))
        needle = "a non-empty folder that is not a nasctl export folder"
    before = _files(out) if out.is_dir() else out.read_bytes()
    assert_refused(in_process(capsys, *EXPORT, "-o", str(out)), str(out), needle)
    assert (_files(out) if out.is_dir() else out.read_bytes()) == before
    assert _siblings(out) == []  # no lock, no temporary folder


def test_a_second_writer_is_refused_while_the_folder_is_locked(
        earlier_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock_file = earlier_export.parent / f".{earlier_export.name}.lock"
    handle = take_lock(lock_file, earlier_export)
    try:
        before = _files(earlier_export)
        assert_refused(in_process(capsys, *EXPORT, "-o", str(earlier_export)),
                       "is in use by another nasctl run")
        assert _files(earlier_export) == before
    finally:
        release_lock(handle, lock_file)


def test_sigterm_midway_leaves_the_earlier_export_intact(earlier_export: Path) -> None:
    before = _files(earlier_export)
    proc = subprocess.Popen([sys.executable, "-m", "nasctl", *EXPORT, "--latency-runs",
                             "100000", "-o", str(earlier_export)],  # 60 s of timing: ended
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # off a terminal: one line per stage
        if "runtime torch" in line:  # model.onnx is written by now, the report not yet
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "nasctl: interrupted"
    assert _files(earlier_export) == before  # the old model and report, together
    assert _siblings(earlier_export) == []


def test_a_new_export_replaces_its_own_earlier_output_whole(
        earlier_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (earlier_export / "model.fp16.onnx").write_bytes(b"stale")  # from an older export
    proc = in_process(capsys, *EXPORT, "-o", str(earlier_export), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(p.name for p in earlier_export.iterdir()) == ["model.onnx", "report.json"]
    assert report["onnx"]["path"] == str(earlier_export / "model.onnx")
    assert all(a["path"].startswith(str(earlier_export)) for a in report["artifacts"])
    assert _siblings(earlier_export) == []


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "genotype.json").write_text("{}")
    assert_refused(in_process(capsys, "train", "DARTS_V2", "--recipe", "digits", "-C", "4",
                              "--layers", "3", "--epochs", "1", "--device", "cpu",
                              "--out", str(out)), "a non-empty folder that is not a training run")
    assert sorted(p.name for p in out.iterdir()) == ["genotype.json"]


@pytest.mark.parametrize("command", [
    ["train", "DARTS_V2", "--recipe", "digits", "-C", "4", "--layers", "3"],
    ["search", "--dataset", "digits", "-C", "4", "--layers", "3", "--batch-size", "8"],
], ids=["train", "search"])
def test_sigterm_before_the_first_checkpoint_leaves_nothing(tmp_path: Path,
                                                            command: list[str]) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nasctl", *command, "--epochs", "1",
                             "--steps-per-epoch", "100000", "--device", "cpu", "--out",
                             str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "nothing was kept" in err
    assert not out.exists()  # no config.json, metrics.jsonl or .lock to refuse a fresh run
