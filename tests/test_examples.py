"""The examples under examples/ run as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_use_genotype_example_runs_for_darts_and_fairdarts_genotypes() -> None:
    for name, expected in [("DARTS_V2", "Genotype(normal=[('sep_conv_3x3', 0)"),
                           ("FairDARTS_a", "FairDARTS form")]:
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / "use_genotype.py"), name],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout
        assert "eval logits: (8, 10)" in proc.stdout
