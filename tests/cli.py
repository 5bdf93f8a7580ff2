"""Run the real `nasctl` CLI in a subprocess, as a user would, and check refusals."""

from __future__ import annotations

import subprocess
import sys


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
