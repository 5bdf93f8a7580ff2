"""Two gloo processes on CPU under torchrun: DDP keeps the ranks identical, rank 0 alone
writes the run folder, and evaluation is summed over both ranks' shards. A genotype whose
cells leave inputs and nodes unread trains too: what is never computed is not trainable."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from nasctl.genotypes import Genotype, from_darts, from_fairdarts, write_genotype
from nasctl.nets import build_network
from nasctl.runs import load_checkpoint
from nasctl.train.loop import _weights_digest


def _torchrun_train(genotype: str, out: Path, epochs: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "nasctl", "train", genotype, "--recipe", "digits", "--channels", "4",
           "--layers", "3", "--batch-size", "16", "--epochs", str(epochs),
           "--steps-per-epoch", "3", "--eval-batches", "1", "--device", "cpu",
           "--out", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = _torchrun_train("DARTS_V2", out, epochs=2)
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


def _unread_inputs() -> Genotype:
    """FairDARTS-like cells: the normal cell reads input 0 only from node 5, which is left
    out of concat; the reduction cell never reads input 1. With 3 cells (normal, reduce,
    reduce) cell 1's output then reaches nothing."""
    return from_darts({
        "normal": [("sep_conv_3x3", 1), ("skip_connect", 1), ("max_pool_3x3", 2),
                   ("sep_conv_3x3", 1), ("dil_conv_3x3", 3), ("skip_connect", 2),
                   ("sep_conv_5x5", 0), ("avg_pool_3x3", 4)],
        "normal_concat": [2, 3, 4],
        "reduce": [("max_pool_3x3", 0), ("avg_pool_3x3", 0), ("skip_connect", 2),
                   ("dil_conv_5x5", 0), ("sep_conv_3x3", 0), ("max_pool_3x3", 2),
                   ("skip_connect", 2), ("sep_conv_3x3", 0)],
        "reduce_concat": [2, 3, 4, 5],
    }, name="unread_inputs")


def test_modules_never_computed_are_not_trainable_and_not_run() -> None:
    torch.manual_seed(0)
    net = build_network(_unread_inputs(), dataset="digits", C=4, layers=3).train()
    frozen = {name.rsplit(".", 1)[0] for name, p in net.named_parameters() if not p.requires_grad}
    assert {name.split(".op")[0].split(".conv_")[0].split(".bn")[0] for name in frozen} == {
        "cells.0.preprocess0", "cells.0._ops.6",  # node 5's sep_conv_5x5 (the pool has none)
        "cells.1.preprocess0", "cells.1.preprocess1",
        *(f"cells.1._ops.{k}" for k in (3, 4, 7)),  # cell 1's ops with parameters
        "cells.2.preprocess1",
    }
    # The layout keeps them (official parameter counts and state_dict keys).
    assert "cells.0._ops.6.op.1.weight" in net.state_dict()

    everything = copy.deepcopy(net)  # computes every module: the same function
    for cell in everything.cells:
        cell._steps = cell._plan
        cell._reads0 = cell._reads1 = True
    everything._live_train = everything._live_eval = frozenset(range(3))

    x = torch.randn(4, 3, 32, 32)
    logits, aux = net(x)
    (logits.sum() + aux.sum()).backward()
    for name, p in net.named_parameters():  # exactly the trainable parameters get gradients
        assert (p.grad is not None) == p.requires_grad, name
    with torch.no_grad():
        full_logits, full_aux = everything(x)
        assert torch.equal(logits, full_logits) and torch.equal(aux, full_aux)
        assert torch.equal(net.eval()(x), everything.eval()(x))  # and the same BN statistics


def test_torchrun_trains_a_genotype_with_unread_cell_inputs(tmp_path: Path) -> None:
    """DDP used to stop at step 2 ("Expected to have finished reduction in the prior
    iteration"): parameters that never get a gradient were waited for."""
    genotype = tmp_path / "unread.genotype.json"
    write_genotype(_unread_inputs(), genotype)
    out = tmp_path / "ddp"
    proc = _torchrun_train(str(genotype), out, epochs=1)
    assert json.loads(proc.stdout)["epochs"] == 1
    ckpt = load_checkpoint(out / "last.pt")
    rank0, rank1 = ckpt["distributed"]["weights_sha256"]
    assert rank0 == rank1  # frozen modules too: DDP broadcast them from rank 0 at the start
    net = build_network(_unread_inputs(), dataset="digits", C=4, layers=3)
    assert list(ckpt["model"]) == list(net.state_dict())  # the layout is unchanged


def test_an_unread_imagenet_stem_output_is_not_trainable() -> None:
    # cell 0 (normal) reads only input 0 (stem0), cell 1 (reduce) only input 1 (cell 0)
    g = from_fairdarts({"normal": [("sep_conv_3x3", 2, 0), ("skip_connect", 3, 0)],
                        "reduce": [("sep_conv_3x3", 2, 1), ("max_pool_3x3", 3, 1)]})
    net = build_network(g, dataset="imagenet", C=4, layers=3, num_classes=5, auxiliary=False)
    assert not any(p.requires_grad for p in net.stem1.parameters())
    net.train()(torch.randn(2, 3, 64, 64)).sum().backward()
    for name, p in net.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name
