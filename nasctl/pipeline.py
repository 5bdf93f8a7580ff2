"""The whole path in one call: search -> train -> export (ONNX, parity, latency, validation).

Each stage writes its own run folder under the pipeline folder, and a stage is complete
when its folder holds ``report.json`` (every stage writes it last). ``resume`` skips
complete stages and resumes an interrupted search or training from its checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nasctl import __version__, atomic
from nasctl.errors import NasctlError

# Stages are PipelineStage events; search and training send their run events, export its
# deploy events, a latency table its measuring steps as Stage events.
Event = Callable[[Any], None]


@dataclass(frozen=True)
class PipelineStage:
    """A stage (or the latency table before the search) changes state."""

    stage: str
    state: str
STAGES = ("search", "train", "export")
CHECKPOINTS = {"search": "checkpoint.pt", "train": "last.pt"}  # what an interrupted stage left

# Small settings for the embedded dataset: the whole path in minutes on two CPU cores, and
# a FairDARTS search that shows the method: batch 16 gives 88 architecture steps in two
# epochs, and Adam at 0.1 (the official 3e-3 is meant for ~10,000 steps) lets the zero-one
# loss push sigmoids past the 0.85 threshold and towards 0 within them; the weight lr 0.025
# (DARTS's; FairDARTS's 0.005 barely trains in 88 steps) gives the architecture gradient
# something to read. See the README's main job.
DIGITS_SEARCH = {"channels": 8, "layers": 5, "batch_size": 16, "epochs": 2,
                 "lr": 0.025, "arch_lr": 0.1}


@dataclass
class PipelineConfig:
    method: str = "fairdarts"
    dataset: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    device: str = "auto"
    search: dict[str, Any] = field(default_factory=dict)  # SearchConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    export_runtimes: tuple[str, ...] = ("torch", "ort", "ort-cuda", "ort-trt", "trt")
    # a latency budget (ms) of the trained network on ONNX Runtime CPU, 1 thread, batch 1:
    # the search prices it from a table of this machine (built once, then cached)
    latency_target: float | None = None


def run_pipeline(config: PipelineConfig, out: str | os.PathLike[str], resume: bool = False,
                 on_event: Event | None = None) -> dict[str, Any]:
    """Run every stage not yet complete; returns the summary (also ``out/report.json``)."""
    emit = on_event or (lambda event: None)
    root = Path(out)
    marker = root / "pipeline.json"
    if marker.exists() and not resume:
        raise NasctlError(f"{root} already holds a pipeline run; pass --resume to continue it "
                          "or choose another --out")
    if not marker.exists() and root.exists() and any(root.iterdir()):
        raise NasctlError(f"{root} exists and is not a pipeline folder; choose another --out")
    _check(config)  # every setting, before the first byte is written
    atomic.write_json(marker, {"nasctl_version": __version__, "config": _jsonable(config)})
    timings: dict[str, float] = {}
    runners = {"search": _search, "train": _train, "export": _export}
    for stage in STAGES:
        folder = root / stage
        if (folder / "report.json").exists():
            emit(PipelineStage(stage, "skipped (complete)"))
            continue
        # a stage that recorded its config was started: continue it (from its checkpoint,
        # or from the start when it died before writing one)
        interrupted = stage in CHECKPOINTS and any(
            (folder / name).exists() for name in (CHECKPOINTS[stage], "config.json"))
        emit(PipelineStage(stage, "resuming" if interrupted else "running"))
        start = time.perf_counter()
        runners[stage](config, root, interrupted, emit)
        timings[stage] = round(time.perf_counter() - start, 1)
    summary = summarize(root)
    summary["seconds"] = timings
    atomic.write_json(root / "report.json", summary)
    return summary


def _search_settings(config: PipelineConfig) -> dict[str, Any]:
    """The search's settings; the network its costs price is the one the train stage
    builds (its recipe's C and cells)."""
    from nasctl.train.recipes import RECIPE_FOR_DATASET, RECIPES

    settings: dict[str, Any] = dict(DIGITS_SEARCH) if config.dataset == "digits" else {}
    recipe = {**RECIPES[RECIPE_FOR_DATASET.get(config.dataset, "cifar10")], **config.train}
    settings.update({"deploy_dataset": config.dataset, "deploy_channels": recipe["channels"],
                     "deploy_layers": recipe["layers"]})
    settings.update(config.search)
    return {"method": config.method, "dataset": config.dataset, "data_dir": config.data_dir,
            "seed": config.seed, "device": config.device, **settings}


def _check(config: PipelineConfig) -> None:
    """Refuse a bad search or training setting (or latency target) in one line."""
    from nasctl.search import make_search_config
    from nasctl.train import resolve_config

    if config.latency_target is not None and not 0 < config.latency_target < float("inf"):
        raise NasctlError(f"--latency-target must be > 0 ms, got {config.latency_target}")
    make_search_config(**_search_settings(config))
    resolve_config(overrides={"dataset": config.dataset, "seed": config.seed,
                              "device": config.device, "data_dir": config.data_dir,
                              **config.train})


def _search(config: PipelineConfig, root: Path, resume: bool, emit: Event) -> None:
    from nasctl.search import make_search_config, run_search

    settings = _search_settings(config)
    if config.latency_target is not None:
        settings.update(_latency_settings(config, emit))
    run_search(make_search_config(**settings), root / "search", resume=resume, on_event=emit)


def _latency_settings(config: PipelineConfig, emit: Event) -> dict[str, Any]:
    """The search settings that aim the found network at the latency target: the network
    the train stage will build (its recipe's C and cells) priced from this machine's
    table (reused from the cache when one was measured here under the same keys)."""
    from nasctl.deploy.events import Stage
    from nasctl.latency.cache import cached_table
    from nasctl.search import get_method, get_space, make_search_config

    probe = make_search_config(**_search_settings(config)).resolved(get_method(config.method))
    deployment = get_space(probe.space, probe.space_options).deployment(probe)
    assert deployment is not None, "every built-in space has a deployment view"
    emit(PipelineStage("latency table", "measuring, or reusing this machine's"))
    table, reused = cached_table(deployment, on_progress=lambda done, total, what: emit(
        Stage(f"{what} ({done}/{total})")))
    emit(PipelineStage("latency table", f"{'reused' if reused else 'measured'} {table.path}"))
    return {"latency_table": table.path, "latency_target": config.latency_target}


def _train(config: PipelineConfig, root: Path, resume: bool, emit: Event) -> None:
    from nasctl.genotypes import load_genotype
    from nasctl.train import resolve_config, resume_config, train

    runtime = {"seed": config.seed, "device": config.device, "data_dir": config.data_dir}
    if resume:
        cfg = resume_config(root / "train", {"device": config.device,
                                             "data_dir": config.data_dir})
        train(None, cfg, root / "train", resume=True, on_event=emit)
        return
    cfg, recipe = resolve_config(overrides={"dataset": config.dataset, **runtime, **config.train})
    genotype = load_genotype(root / "search" / "genotype.json")
    train(genotype, cfg, root / "train", recipe=recipe, on_event=emit)


def _export(config: PipelineConfig, root: Path, resume: bool, emit: Event) -> None:
    from nasctl.deploy.report import ExportOptions, export_and_check
    from nasctl.export.source import load_model_source

    source = load_model_source(root / "train" / "best.pt")
    options = ExportOptions(out_dir=str(root / "export"), runtimes=config.export_runtimes,
                            parity_data=config.dataset, data_dir=config.data_dir)
    export_and_check(source, options, on_event=emit)


def summarize(root: Path) -> dict[str, Any]:
    """One row of what the pipeline produced, from the stages' reports."""
    import json

    from nasctl.deploy.report_types import ExportReport

    def load(stage: str) -> dict[str, Any]:
        path = root / stage / "report.json"
        return json.loads(path.read_text()) if path.exists() else {}

    search, train, exported = load("search"), load("train"), load("export")
    export = ExportReport.from_dict(exported) if exported else None
    genotype_path = root / "search" / "genotype.json"
    genotype = json.loads(genotype_path.read_text()) if genotype_path.exists() else {}
    discretization = genotype.get("provenance", {}).get("discretization", {})
    runtimes = {row.runtime: row for row in export.runtimes} if export else {}
    validation = export.validation if export else None
    ort = runtimes.get("ort")
    return {
        "folder": str(root),
        "genotype": str(root / "search" / "genotype.json"),
        "checkpoint": str(root / "train" / "best.pt"),
        "onnx": str(root / "export" / "model.onnx"),
        "search": {**{k: search.get(k) for k in ("genotype", "epochs_run") if k in search},
                   # cells whose ops all stayed under the threshold, so the discretiser kept
                   # the strongest op per node instead of what the threshold chose
                   "fallback_cells": discretization.get("fallback_strongest_per_node", []),
                   **_spread(root / "search" / "arch_history.json",
                             discretization.get("threshold"))},
        "test_top1": train.get("best_top1"),  # the best epoch's, which best.pt holds
        "best_epoch": train.get("best_epoch"),
        "params": validation.torch.params if validation else None,
        "macs": validation.torch.macs_convfc if validation else None,
        "validation": validation.paper.status if validation else None,
        "counts_agree": all(c.status == "pass" for c in validation.agreement)
        if validation else True,
        "parity": {name: row.parity.status for name, row in runtimes.items()},
        "latency_ms": ort.latency.stats.median_ms if ort and ort.latency.stats else None,
        "latency_budget": next((c for c in search.get("costs", [])
                                if c.get("cost") == "latency" and c.get("target")), None),
        "passed": bool(export and export.passed),
    }


def _spread(path: Path, threshold: float | None) -> dict[str, Any]:
    """How far a thresholded (FairDARTS) search pushed its op weights apart: how many of
    the last epoch's ops are at or above the threshold and at or below 1 - threshold."""
    import json

    if threshold is None or not path.exists():
        return {}
    last = json.loads(path.read_text())["history"][-1]
    # every space records its groups' weights as lists of rows (cells: "normal" and
    # "reduce"; the mbconv chain: "layers")
    weights = [w for key, rows in last.items() if isinstance(rows, list)
               for row in rows for w in row]
    return {"threshold": threshold, "ops": len(weights),
            "ops_above_threshold": sum(w >= threshold for w in weights),
            "ops_below_1_minus_threshold": sum(w <= 1 - threshold for w in weights),
            "weight_range": [round(min(weights), 4), round(max(weights), 4)]}


def _jsonable(config: PipelineConfig) -> dict[str, Any]:
    doc = asdict(config)
    doc["export_runtimes"] = list(config.export_runtimes)
    return doc
