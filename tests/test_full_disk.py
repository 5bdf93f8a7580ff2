"""A full disk during a run is one line and exit 2, not a traceback. The disk is "full"
for the child process by a file-size limit (RLIMIT_FSIZE), so writes past it fail with
EFBIG exactly where a full disk would fail them with ENOSPC."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LIMIT = 64 * 1024  # bytes: config.json and genotype.json fit, a checkpoint does not


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


@pytest.mark.parametrize("command", [
    ["train", "DARTS_V2", "--recipe", "digits", "-C", "4", "--layers", "3", "--epochs", "1",
     "--steps-per-epoch", "1", "--eval-batches", "1", "--device", "cpu"],
    ["search", "--dataset", "digits", "-C", "4", "--layers", "3", "--batch-size", "8",
     "--epochs", "1", "--steps-per-epoch", "1", "--device", "cpu"],
])
def test_a_full_disk_is_one_line(tmp_path: Path, command: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "nasctl", *command, "--out",
                           str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                          preexec_fn=_small_disk, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nasctl: error:" in lines[0], proc.stderr[-2000:]
    assert "File too large" in lines[0] or "cannot write" in lines[0], lines[0]
    assert str(tmp_path / "run") in lines[0], lines[0]  # the file that could not be written


def test_a_full_disk_during_export_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """The exporter's own write fails: no fallback, no half-made folder, the file named."""
    out = tmp_path / "e"
    proc = subprocess.run([sys.executable, "-m", "nasctl", "export", "DARTS_V2", "-C", "16",
                           "--layers", "8", "--runtimes", "torch,ort", "--samples", "2",
                           "--latency-runs", "2", "-o", str(out), "--json"],
                          capture_output=True, text=True, preexec_fn=_small_disk, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ": cannot write (File too large)" in lines[0], proc.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
