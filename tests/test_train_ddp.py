"""Two gloo processes on CPU under torchrun: DDP keeps the ranks identical, rank 0 alone
writes the run folder, and evaluation is summed over both ranks' shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nasctl.runs import load_checkpoint
from nasctl.train.loop import _weights_digest


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nasctl", "train", "DARTS_V2", "--recipe", "digits", "--channels", "4",
           "--layers", "3", "--batch-size", "16", "--epochs", "2", "--steps-per-epoch", "3",
           "--eval-batches", "1", "--device", "cpu", "--out", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # rank 0 alone prints, one document
    assert summary["epochs"] == 2

    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "config.json", "genotype.json", "last.pt", "metrics.jsonl", "report.json"]
    ckpt = load_checkpoint(out / "last.pt")
    dist = ckpt["distributed"]
    assert dist["world_size"] == 2
    rank0, rank1 = dist["weights_sha256"]
    assert rank0 == rank1  # parameters and BN buffers identical on both ranks
    assert rank0 == _weights_digest(ckpt["model"])  # and they are what was saved
    assert len(ckpt["rng"]) == 2  # each rank's RNG, for an exact resume
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2  # one line per epoch, written once
    assert records[-1]["test_samples"] == 2 * 16  # one batch from each rank's shard
