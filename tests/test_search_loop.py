"""The search loop end to end on tiny digits searches: every method through the CLI,
kill-and-resume reproducibility, divergence handling and a 2-process gloo run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.errors import TrainingDiverged
from nasctl.genotypes import read_genotype
from nasctl.nets import build_network
from nasctl.runs import load_checkpoint
from nasctl.search import SearchConfig
from nasctl.search.loop import _Search

TINY = ["--dataset", "digits", "--init-channels", "4", "--layers", "3", "--batch-size", "8",
        "--steps-per-epoch", "2", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("method_args", [["--method", "fairdarts"],
                                         ["--method", "idarts", "--probe-batches", "2"],
                                         ["--method", "darts", "--unrolled"]])
def test_search_cli_writes_a_buildable_genotype(tmp_path: Path, method_args: list[str]) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["search", *method_args, *TINY, "--epochs", "2",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 2 and Path(summary["files"]["genotype"]).exists()
    g = read_genotype(out / "genotype.json")
    assert g.provenance["method"] == method_args[1] and g.provenance["epochs"] == 2
    assert "discretization" in g.provenance
    build_network(g, dataset="digits", C=4, layers=3)
    validated = CliRunner().invoke(app, ["validate", str(out / "genotype.json"), "--json"])
    assert validated.exit_code == 0, validated.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"arch_loss", "weight_loss", "arch_acc", "weight_acc", "genotype",
            "arch_weights"} <= set(metrics[0])
    history = json.loads((out / "arch_history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0]["normal"] != history[-1]["normal"]  # the alphas moved
    assert json.loads((out / "config.json").read_text())["method"] == method_args[1]


def _search(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nasctl", "search", "--method", "fairdarts", *TINY,
           "--epochs", "2", "--deterministic", "--seed", "3", "--out", str(out), "--json",
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def test_killed_search_resumes_to_the_same_result(tmp_path: Path) -> None:
    ref = _search(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    killed = _search(tmp_path / "cut", "--kill-after-steps", "3")  # dies in epoch 2
    assert killed.returncode == -9
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    resumed = _search(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = read_genotype(tmp_path / "ref" / "genotype.json")
    b = read_genotype(tmp_path / "cut" / "genotype.json")
    assert a.content_hash() == b.content_hash()
    sa = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["model"]
    sb = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["model"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    again = _search(tmp_path / "cut")  # a finished folder is not silently overwritten
    assert again.returncode == 2 and "--resume" in again.stderr


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    config = SearchConfig(method="darts", init_channels=4, layers=3, batch_size=8,
                          steps_per_epoch=2, epochs=3, device="cpu")
    search = _Search(config, tmp_path, resume=False, on_event=None)

    def poison(event: dict[str, object]) -> None:
        if event["event"] == "epoch" and event["epoch"] == 1:
            with torch.no_grad():
                search.model.classifier.weight.fill_(float("nan"))

    search.on_event = poison
    with pytest.raises(TrainingDiverged, match="loss became nan.*checkpoint.pt"):
        search.run()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


DDP_SCRIPT = """
import json, sys
import torch
from nasctl.search import SearchConfig, run_search
torch.set_num_threads(1)
out = sys.argv[1]
cfg = SearchConfig(method="fairdarts", init_channels=4, layers=3, batch_size=8,
                   steps_per_epoch=2, epochs=1, device="cpu")
result = run_search(cfg, out)
rank = int(__import__("os").environ["RANK"])
json.dump(result.alphas, open(f"{out}/alphas_rank{rank}.json", "w"))
"""


def test_two_process_search_keeps_arch_weights_identical(tmp_path: Path) -> None:
    script = tmp_path / "ddp_search.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(script), str(out)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a0 = json.loads((out / "alphas_rank0.json").read_text())
    a1 = json.loads((out / "alphas_rank1.json").read_text())
    assert a0 == a1
    assert any(abs(w) > 1e-6 for row in a0["normal"] for w in row)  # they were trained
    assert (out / "genotype.json").exists()
    assert json.loads((out / "config.json").read_text())["world_size"] == 2


def test_search_augmentation_is_recorded(tmp_path: Path) -> None:
    from nasctl.search import SearchConfig, get_method, run_search

    method = get_method("fairdarts")
    assert SearchConfig(dataset="cifar10").resolved(method).augment is True  # official
    assert SearchConfig(dataset="digits").resolved(method).augment is False
    cfg = SearchConfig(method="fairdarts", init_channels=4, layers=3, batch_size=8,
                       steps_per_epoch=1, epochs=1, device="cpu", augment=True)
    run_search(cfg, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["augment"] is True
