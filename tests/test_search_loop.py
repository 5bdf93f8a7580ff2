"""The one search loop end to end on tiny digits searches: every method through the CLI,
kill-and-resume at every write point, the resume rule, locks, Ctrl-C, divergence handling
and a 2-process gloo run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli import assert_refused, nasctl
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.distributed import DistInfo
from nasctl.errors import TrainingDiverged
from nasctl.genotypes import read_genotype
from nasctl.nets import build_network
from nasctl.runs import EpochDone, RunDir, load_checkpoint, open_run
from nasctl.search import SearchConfig, make_search_config
from nasctl.search.loop import CHECKPOINT, Search

TINY = ["--dataset", "digits", "-C", "4", "--layers", "3", "--batch-size", "8",
        "--steps-per-epoch", "2", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FAULTS = Path(__file__).parent / "faults.py"


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
    assert set(summary["cells"]) == {"normal", "reduce"}
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
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "search" and config["config"]["method"] == method_args[1]
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert (ckpt["format"], ckpt["version"], ckpt["kind"]) == ("nasctl-checkpoint", 1, "search")
    assert not (out / ".lock").exists()


def _faulty(out: Path, kill_at: int, count: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(FAULTS), str(kill_at), str(count), "--", "search", *args,
           "--out", str(out), "--json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


BASE = ["--method", "fairdarts", *TINY]
SEARCH = [*BASE, "--epochs", "1", "--deterministic", "--seed", "3"]


def _records(run: Path) -> list[dict[str, object]]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_run(a: Path, b: Path) -> None:
    assert (read_genotype(a / "genotype.json").content_hash()
            == read_genotype(b / "genotype.json").content_hash())
    sa, sb = (load_checkpoint(p / CHECKPOINT)["model"] for p in (a, b))
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert _records(a) == _records(b)  # the same epochs with the same numbers


def test_a_search_killed_at_every_write_point_resumes_to_the_same_result(
        tmp_path: Path) -> None:
    count = tmp_path / "writes"
    ref = _faulty(tmp_path / "ref", 0, count, *SEARCH)
    assert ref.returncode == 0, ref.stderr
    writes = int(count.read_text())
    assert writes >= 6  # config, checkpoint, arch_history, metrics, genotype, report
    for kill_at in range(1, writes + 1):
        out = tmp_path / f"cut{kill_at}"
        killed = _faulty(out, kill_at, count, *SEARCH)
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        if not (out / "config.json").exists():  # died before recording anything
            assert_refused(nasctl("search", "--resume", "--out", str(out)), "nothing to resume")
            rerun = _faulty(out, 0, count, *SEARCH)  # the folder is free for a fresh run
            assert rerun.returncode == 0, rerun.stderr
        else:  # --resume needs no other flags: the folder holds the settings
            resumed = _faulty(out, 0, count, "--resume")
            assert resumed.returncode == 0, (kill_at, resumed.stderr)
        _same_run(tmp_path / "ref", out)
    again = nasctl("search", *SEARCH, "--out", str(tmp_path / "ref"))
    assert_refused(again, "--resume")  # a finished folder is not silently overwritten


def test_resume_refuses_changed_settings_and_accepts_runtime_ones(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = nasctl("search", *BASE, "--epochs", "1", "--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    assert_refused(nasctl("search", "--resume", "--out", str(out), "--lr", "0.1"),
                   "cannot change", "lr=0.1", "saved 0.005")
    assert_refused(nasctl("search", "--resume", "--out", str(out), "--w01", "3"),
                   "cannot change", "w01=3.0")
    same = nasctl("search", "--resume", "--out", str(out), "--device", "cpu",
                  "--no-channels-last", "--json")  # runtime settings may change
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["epochs"] == 1


def test_a_locked_run_folder_is_refused_and_a_failed_run_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    holder = RunDir(out)
    holder.lock()  # as a running nasctl holds it
    try:
        assert_refused(nasctl("search", *SEARCH, "--out", str(out)), "in use", str(os.getpid()))
    finally:
        holder.unlock()
    fresh = tmp_path / "fresh"
    failed = nasctl("search", *BASE, "--epochs", "1", "--dataset", "cifar10", "--data-dir",
                    str(tmp_path / "no-cifar"), "--out", str(fresh))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert not fresh.exists()  # the run removed the folder it created


def test_ctrl_c_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "nasctl", "search", *BASE,
                             "--epochs", "4", "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 300
    while not (out / CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"nasctl search --resume --out {out}" in lines[0], stderr
    resumed = nasctl("search", "--resume", "--out", str(out), "--json")
    assert resumed.returncode == 0, resumed.stderr


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    config = make_search_config(method="darts", channels=4, layers=3, batch_size=8,
                                steps_per_epoch=2, epochs=3, device="cpu")
    search = Search(config, DistInfo(), torch.device("cpu"))

    def poison(event: object) -> None:
        if isinstance(event, EpochDone) and event.epoch == 1:
            with torch.no_grad():
                search.model.classifier.weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="loss became nan.*checkpoint.pt"), \
            open_run(tmp_path, False, CHECKPOINT, "search") as run:
        search.run(run, tmp_path, poison)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


DDP_SCRIPT = """
import json, os, sys
import torch
from nasctl.search import make_search_config, run_search
torch.set_num_threads(1)
out, space = sys.argv[1], sys.argv[2]
size = {"channels": 4, "layers": 3} if space == "cell" else {"width_mult": 0.25}
cfg = make_search_config(method="fairdarts", space=space, batch_size=8, steps_per_epoch=2,
                         epochs=1, device="cpu", **size)
result = run_search(cfg, out)
json.dump(result.alphas, open(f"{out}/alphas_rank{os.environ['RANK']}.json", "w"))
"""


@pytest.mark.parametrize("space", ["cell", "mbconv"])
def test_two_process_search_keeps_arch_weights_identical(tmp_path: Path, space: str) -> None:
    script = tmp_path / "ddp_search.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(script), str(out), space],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a0 = json.loads((out / "alphas_rank0.json").read_text())
    a1 = json.loads((out / "alphas_rank1.json").read_text())
    assert a0 == a1
    flat = [w for alpha in a0 for w in (alpha if isinstance(alpha[0], float)
                                        else [v for row in alpha for v in row])]
    assert any(abs(w) > 1e-6 for w in flat)  # they were trained
    assert (out / "genotype.json").exists()
    assert json.loads((out / "config.json").read_text())["world_size"] == 2


def test_search_augmentation_is_recorded(tmp_path: Path) -> None:
    from nasctl.search import get_method, run_search

    method = get_method("fairdarts")
    assert SearchConfig(dataset="cifar10").resolved(method).augment is True  # official
    assert SearchConfig(dataset="digits").resolved(method).augment is False
    cfg = make_search_config(method="fairdarts", channels=4, layers=3, batch_size=8,
                             steps_per_epoch=1, epochs=1, device="cpu", augment=True)
    run_search(cfg, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["augment"] is True


def test_an_mbconv_search_killed_after_its_first_epoch_resumes_to_the_same_result(
        tmp_path: Path) -> None:
    args = ["--space", "mbconv", "--method", "fairdarts", "--dataset", "digits",
            "--width-mult", "0.25", "--batch-size", "8", "--steps-per-epoch", "2",
            "--epochs", "2", "--w01", "5", "--deterministic", "--device", "cpu"]
    count = tmp_path / "writes"
    ref = _faulty(tmp_path / "ref", 0, count, *args)
    assert ref.returncode == 0, ref.stderr
    # writes: config, then epoch 1's checkpoint, arch_history, metrics; die right after them
    killed = _faulty(tmp_path / "cut", 5, count, *args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT)["epoch"] == 1
    resumed = _faulty(tmp_path / "cut", 0, count, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    _same_run(tmp_path / "ref", tmp_path / "cut")
    provenance = read_genotype(tmp_path / "cut" / "genotype.json").provenance
    assert provenance["discretization"]["w01"] == 5.0  # the method option was honoured
    assert provenance["discretization"]["threshold"] == 0.85


def test_a_warning_is_shown_once_on_stderr(tmp_path: Path) -> None:
    proc = nasctl("search", *BASE, "--epochs", "2", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    fallback = "no normal-cell op reached sigmoid >= 0.85"  # 2 tiny epochs: not yet
    assert proc.stderr.count(fallback) == 1, proc.stderr
    assert fallback not in proc.stdout
