"""Run the real `nasctl` CLI in a subprocess, as a user would, and check refusals."""

from __future__ import annotations

import subprocess
import sys
from typing import Any


def nasctl(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nasctl", *args], capture_output=True,
                          text=True, timeout=timeout)


def assert_refused(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Bad input: exit 2, exactly one line on stderr containing ``needles``, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def in_process(capsys: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """The console script's entry point in this process, for cases where a subprocess
    would spend most of its time importing torch (``capsys``: pytest's fixture)."""
    import pytest

    from nasctl.cli import app

    with pytest.raises(SystemExit) as stop:
        app(list(args), prog_name="nasctl")
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), int(stop.value.code or 0), captured.out,
                                       captured.err)
