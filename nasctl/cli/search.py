"""`nasctl search`: differentiable architecture search (FairDARTS, iDARTS, DARTS) in any
registered search space."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from nasctl.cli._out import EpochProgress, console, err_console, print_json
from nasctl.errors import NasctlError
from nasctl.runs import EpochDone, RunEvent, RunStarted, RunWarning, StepDone

# Flags that are method options: (flag, constructor keyword). The method's constructor
# says which ones it takes; giving one it does not take is an error.
METHOD_FLAGS = {"w01": "--w01", "loss01": "--loss01", "discretization": "--discretization",
                "threshold": "--threshold", "edge_k": "--edge-k", "node_norm": "--node-norm",
                "decorrelation": "--decorrelation", "gs_order": "--gs-order",
                "decorrelate_over": "--decorrelate-over", "similarity": "--similarity",
                "node_output": "--node-output", "unrolled": "--unrolled"}
SIZE_FLAGS = ("channels", "layers", "epochs", "batch_size", "steps_per_epoch", "width_mult")


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)


def _opt(help_: str, *names: str, hidden: bool = False) -> Any:
    return typer.Option(*names, help=help_, show_default=False, hidden=hidden)


def search_cmd(
    out: Annotated[Path, _opt("run folder", "--out", "-o")],
    method: Annotated[str | None, _opt("fairdarts (default), idarts or darts",
                                       "--method")] = None,
    space: Annotated[str | None, _opt("cell (DARTS cells, default) or mbconv (FairDARTS's "
                                      "MobileNetV2-like chain)", "--space")] = None,
    config: Annotated[Path | None, _opt("TOML/JSON (or YAML with PyYAML) file of "
                                        "settings (see nasctl.search.SearchConfig)",
                                        "--config")] = None,
    set_: Annotated[list[str] | None, _opt("any setting, KEY=VALUE (repeatable)",
                                           "--set")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the search in --out from its last checkpoint with its "
        "saved settings; only runtime settings (--device, --data-dir, --download, "
        "--num-workers, --channels-last, --recompute) may be given, anything else that "
        "differs is refused (the rule nasctl train --resume follows)")] = False,
    dataset: Annotated[str | None, _opt("digits (default), cifar10, cifar100, imagenet",
                                        "--dataset")] = None,
    data_dir: Annotated[str | None, _opt("folder holding the dataset", "--data-dir")] = None,
    download: Annotated[bool | None, _opt("download CIFAR if missing (needs a network)",
                                          "--download")] = None,
    train_portion: Annotated[float | None, _opt("share of the training set for weights "
                                                "(rest: architecture), default 0.5",
                                                "--train-portion")] = None,
    augment: Annotated[bool | None, _opt(
        "read both search halves with the training augmentation (default: on, as the "
        "official searches; off for digits)", "--augment/--no-augment")] = None,
    ops: Annotated[str | None, _opt("cell: comma-separated candidate ops (default: the "
                                    "method's)", "--ops")] = None,
    channels: Annotated[int | None, _opt("cell: initial channels C (default 16)", "--channels",
                                         "-C")] = None,
    channels_alias: Annotated[int | None, _opt("", "--init-channels", "--C",
                                               hidden=True)] = None,
    layers: Annotated[int | None, _opt("cell: cells (default 8)", "--layers")] = None,
    nodes: Annotated[int | None, _opt("cell: intermediate nodes per cell (default 4)",
                                      "--nodes")] = None,
    recompute: Annotated[str | None, _opt(
        "cell: recompute edges in backward: off, full-res (cells up to the first "
        "reduction), all; auto (default) = full-res on CPU, off on CUDA", "--recompute")] = None,
    layout: Annotated[str | None, _opt("mbconv: chain layout (proxyless-s2)",
                                       "--layout")] = None,
    width_mult: Annotated[float | None, _opt("mbconv: width multiplier (default 1)",
                                             "--width-mult")] = None,
    macs_target: Annotated[float | None, _opt("mbconv: MAC budget in millions (e.g. 386), "
                                              "a differentiable penalty",
                                              "--macs-target")] = None,
    macs_weight: Annotated[float | None, _opt("mbconv: weight of the MAC penalty (default 1)",
                                              "--macs-weight")] = None,
    macs_resolution: Annotated[int | None, _opt("mbconv: input size the budget refers to "
                                                "(default 224)", "--macs-resolution")] = None,
    batch_size: Annotated[int | None, _opt("batch size per step and half (default: the "
                                           "method's: fairdarts 128, darts/idarts 64)",
                                           "--batch-size")] = None,
    epochs: Annotated[int | None, _opt("epochs (default 50)", "--epochs")] = None,
    lr: Annotated[float | None, _opt("weight learning rate (cosine-annealed)", "--lr")] = None,
    lr_min: Annotated[float | None, _opt("final weight learning rate", "--lr-min")] = None,
    arch_lr: Annotated[float | None, _opt("architecture (Adam) learning rate",
                                          "--arch-lr")] = None,
    weight_decay: Annotated[float | None, _opt("weight decay", "--weight-decay")] = None,
    grad_clip: Annotated[float | None, _opt("weight gradient clip norm", "--grad-clip")] = None,
    w01: Annotated[float | None, _opt("fairdarts: zero-one loss weight (default 10)",
                                      "--w01")] = None,
    loss01: Annotated[str | None, _opt("fairdarts: l2 (default) or l1", "--loss01")] = None,
    discretization: Annotated[str | None, _opt("fairdarts: sparse (default) or edge",
                                               "--discretization")] = None,
    threshold: Annotated[float | None, _opt("fairdarts: sigmoid threshold (default 0.85)",
                                            "--threshold")] = None,
    edge_k: Annotated[int | None, _opt("fairdarts edge: ops kept per edge at most (the "
                                       "official rule keeps 2)", "--edge-k")] = None,
    node_norm: Annotated[str | None, _opt("idarts: bn (default), rms or none",
                                          "--node-norm")] = None,
    decorrelation: Annotated[str | None, _opt("idarts: lstsq (default), gram-schmidt or none",
                                              "--decorrelation")] = None,
    gs_order: Annotated[str | None, _opt("idarts gram-schmidt: alpha (default) or index",
                                         "--gs-order")] = None,
    decorrelate_over: Annotated[str | None, _opt(
        "idarts: decorrelate an op against the ops of all its node's in-edges (node, "
        "default) or of its own edge (edge)", "--decorrelate-over")] = None,
    similarity: Annotated[str | None, _opt("idarts: cosine (default) or inner (product) of "
                                           "node and decorrelated op output",
                                           "--similarity")] = None,
    node_output: Annotated[str | None, _opt("idarts: score against the node before "
                                            "(pre-norm, default) or after (post-norm) node "
                                            "normalization", "--node-output")] = None,
    probe_batches: Annotated[int | None, _opt("idarts: held-out batches for decorrelation "
                                              "(default 4)", "--probe-batches")] = None,
    unrolled: Annotated[bool | None, _opt("darts: second-order architecture gradient",
                                          "--unrolled")] = None,
    seed: Annotated[int | None, _opt("random seed (default 0)", "--seed")] = None,
    deterministic: Annotated[bool | None, _opt("deterministic algorithms",
                                               "--deterministic")] = None,
    device: Annotated[str | None, _opt("auto (default), cpu, cuda, cuda:N", "--device")] = None,
    amp: Annotated[str | None, _opt("off (default), bf16, fp16 (CUDA only)", "--amp")] = None,
    channels_last: Annotated[bool | None, _opt("NHWC tensors (default on; faster on CPU and "
                                               "CUDA)", "--channels-last/--no-channels-last")
                             ] = None,
    num_workers: Annotated[int | None, _opt("data loader workers (default 0)", "--num-workers",
                                            "--workers")] = None,
    steps_per_epoch: Annotated[int | None, _opt("limit steps per epoch", "--steps-per-epoch")
                               ] = None,
    limit_batches: Annotated[int | None, _opt("", "--limit-batches", hidden=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="no progress; one JSON summary on "
                                          "stdout")] = False,
) -> None:
    """Search an architecture with METHOD in SPACE; writes genotype.json, config.json,
    metrics.jsonl, arch_history.json, checkpoint.pt, plots and report.json to --out.

    Under `torchrun --nproc-per-node N -m nasctl search ...` it runs data-parallel."""
    from nasctl.search import (
        resolve_search_config,
        resume_search_config,
        run_search,
        saved_search_config,
    )
    from nasctl.search.config import FIELDS
    from nasctl.settings import parse_assignments

    given = {
        "method": method, "space": space, "dataset": dataset, "data_dir": data_dir,
        "download": download, "train_portion": train_portion, "augment": augment,
        "ops": ops, "channels": channels if channels is not None else channels_alias,
        "layers": layers, "nodes": nodes, "recompute": recompute, "layout": layout,
        "width_mult": width_mult, "macs_target": macs_target, "macs_weight": macs_weight,
        "macs_resolution": macs_resolution, "batch_size": batch_size, "epochs": epochs,
        "lr": lr, "lr_min": lr_min, "arch_lr": arch_lr, "weight_decay": weight_decay,
        "grad_clip": grad_clip, "probe_batches": probe_batches, "seed": seed,
        "deterministic": deterministic, "device": device, "amp": amp,
        "channels_last": channels_last, "num_workers": num_workers,
        "steps_per_epoch": steps_per_epoch if steps_per_epoch is not None else limit_batches,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    overrides.update(parse_assignments(set_ or [], FIELDS))
    flags = {"w01": w01, "loss01": loss01, "discretization": discretization,
             "threshold": threshold, "edge_k": edge_k, "node_norm": node_norm,
             "decorrelation": decorrelation, "gs_order": gs_order,
             "decorrelate_over": decorrelate_over, "similarity": similarity,
             "node_output": node_output, "unrolled": unrolled}
    if resume:
        if config is not None:
            raise NasctlError("--resume uses the saved run's settings; drop --config")
        saved = saved_search_config(out)
        options = _method_options(str(saved.get("method")), flags)
        if options:
            overrides["method_options"] = options
        cfg = resume_search_config(saved, overrides)
    else:
        from_file = resolve_search_config(config, {}) if config is not None else None
        method_name = overrides.get("method", from_file.method if from_file else "fairdarts")
        options = _method_options(str(method_name), flags)
        if options:
            file_options = from_file.method_options if from_file else {}
            overrides["method_options"] = {**file_options, **options}
        cfg = resolve_search_config(config, overrides)
        if cfg.dataset == "digits" and not any(k in overrides for k in SIZE_FLAGS):
            err_console.print("warning: no size flags: the method's paper settings (C=16, 8 "
                              "cells, 50 epochs) are slow on a CPU; try -C 8 --layers 5 "
                              "--epochs 10", highlight=False)
    main = int(os.environ.get("RANK", "0")) == 0
    warned: set[str] = set()
    if as_json or not main:
        result = run_search(cfg, out, resume=resume)
    else:
        with _SearchProgress() as progress:
            result = run_search(cfg, out, resume=resume, on_event=progress.on_event)
        warned = progress.warned
    if not main:
        return
    from nasctl.search import get_space

    summary = {
        "run_dir": str(result.run_dir), "space": cfg.space, "method": cfg.method,
        "dataset": cfg.dataset, "epochs": result.epochs_run, "genotype": result.genotype.name,
        "hash": result.genotype.content_hash(), **get_space(cfg.space).describe(result.genotype),
        "fallback": result.fallback, **result.report, "files": result.files,
        "notes": result.notes,
    }
    if as_json:
        print_json(summary)
        return
    _print_summary(summary, f"search: {cfg.method} on {cfg.dataset}, {cfg.space} space", warned)


def _method_options(method: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The given method flags, checked against what the method's constructor takes."""
    from nasctl.search.methods import METHODS, method_names

    given = {k: v for k, v in flags.items() if v is not None}
    if method not in method_names():
        return given  # the config check names the unknown method
    accepted = inspect.signature(METHODS[method]).parameters
    foreign = [METHOD_FLAGS[k] for k in given if k not in accepted]
    if foreign:
        raise NasctlError(f"{', '.join(foreign)} do not apply to --method {method}")
    return given


def _print_summary(summary: dict[str, Any], title: str, warned: set[str]) -> None:
    table = Table(title=title, box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for name, edges in summary.get("cells", {}).items():
        table.add_row(name, ", ".join(f"{op} {u}->{v}" for op, u, v in edges))
    if "layers" in summary:
        table.add_row("layers", ", ".join(summary["layers"]))
    if summary.get("macs") is not None:
        table.add_row(f"MACs at {summary['macs_resolution']}px", f"{summary['macs']:,}")
    if summary["fallback"]:
        table.add_row("fallback", "the rule kept nothing in " + ", ".join(summary["fallback"])
                      + "; the strongest op decided there")
    for key, path in summary["files"].items():
        table.add_row(key, path)
    console.print(table)
    for note in summary["notes"]:
        if note not in warned:  # a warning shown during the run is not repeated
            err_console.print(f"note: {note}", highlight=False)


class _SearchProgress(EpochProgress):
    """A rich progress display fed by the search loop's events."""

    def __init__(self) -> None:
        super().__init__()
        self.warned: set[str] = set()

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.bar.update(self.epochs, total=event.epochs, completed=event.epoch)
            self.bar.update(self.steps, total=event.steps, completed=0)
            if event.resumed:
                self.bar.console.print(f"resuming after epoch {event.epoch}")
        elif isinstance(event, StepDone):
            self.bar.update(self.steps, completed=event.step, description=f"epoch {event.epoch}",
                            info=f"arch {event.values['arch_loss']:.3f}  weight "
                                 f"{event.values['weight_loss']:.3f}")
        elif isinstance(event, EpochDone):
            self.bar.update(self.epochs, completed=event.epoch,
                            info=f"weight acc {100 * event.metrics['weight_acc']:.1f}%  arch "
                                 f"acc {100 * event.metrics['arch_acc']:.1f}%")
            self.bar.update(self.steps, completed=0)
        elif isinstance(event, RunWarning) and event.message not in self.warned:
            self.warned.add(event.message)  # each warning once, on stderr
            err_console.print(f"[yellow]warning:[/] epoch {event.epoch}: {event.message}")
