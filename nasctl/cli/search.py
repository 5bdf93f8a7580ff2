"""`nasctl search`: differentiable architecture search (FairDARTS, iDARTS, DARTS)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from nasctl.cli._out import EpochProgress, console, err_console, print_json
from nasctl.errors import NasctlError

METHOD_HELP = "fairdarts, idarts or darts"


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)


def _opt(help_: str, *names: str, hidden: bool = False) -> Any:
    return typer.Option(*names, help=help_, show_default=False, hidden=hidden)


def search_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder", show_default=False)],
    method: Annotated[str, typer.Option("--method", help=METHOD_HELP)] = "fairdarts",
    space: Annotated[str, typer.Option("--space", help="cell (DARTS cells) or mbconv "
                                       "(FairDARTS's MobileNetV2-like chain)")] = "cell",
    width_mult: Annotated[float, typer.Option("--width-mult", help="mbconv: width "
                                              "multiplier")] = 1.0,
    macs_target: Annotated[float | None, _opt("mbconv: MAC budget in millions (e.g. 386), "
                                              "a differentiable penalty", "--macs-target")] = None,
    macs_weight: Annotated[float, typer.Option("--macs-weight", help="mbconv: weight of the "
                                               "MAC penalty")] = 1.0,
    macs_resolution: Annotated[int, typer.Option("--macs-resolution", help="mbconv: input "
                                                 "size the budget refers to")] = 224,
    dataset: Annotated[str, typer.Option("--dataset", help="digits, cifar10, cifar100, "
                                         "imagenet")] = "digits",
    data_dir: Annotated[str | None, _opt("folder holding the dataset", "--data-dir")] = None,
    download: Annotated[bool, typer.Option("--download", help="download CIFAR if missing "
                                           "(needs a network)")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue the search in --out from "
                                         "its last checkpoint")] = False,
    train_portion: Annotated[float, typer.Option("--train-portion", help="share of the "
                                                 "training set for weights (rest: "
                                                 "architecture)")] = 0.5,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", show_default=False,
        help="read both search halves with the training augmentation (default: on, as "
             "the official searches; off for digits)")] = None,
    ops: Annotated[str | None, _opt("comma-separated candidate ops (default: the method's)",
                                    "--ops")] = None,
    init_channels: Annotated[int, typer.Option("--init-channels", help="C")] = 16,
    layers: Annotated[int, typer.Option("--layers", help="cells")] = 8,
    nodes: Annotated[int, typer.Option("--nodes", help="intermediate nodes per cell")] = 4,
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
    w01: Annotated[float, typer.Option("--w01", help="fairdarts: zero-one loss weight")] = 10.0,
    loss01: Annotated[str, typer.Option("--loss01", help="fairdarts: l2 or l1")] = "l2",
    discretization: Annotated[str, typer.Option("--discretization",
                                                help="fairdarts: sparse or edge")] = "sparse",
    threshold: Annotated[float, typer.Option("--threshold", help="fairdarts: sigmoid "
                                             "threshold")] = 0.85,
    edge_k: Annotated[int, typer.Option("--edge-k", help="fairdarts edge: ops kept per edge "
                                        "at most (the official rule keeps 2)")] = 2,
    node_norm: Annotated[str, typer.Option("--node-norm", help="idarts: bn, rms or "
                                           "none")] = "bn",
    decorrelation: Annotated[str, typer.Option("--decorrelation", help="idarts: lstsq, "
                                               "gram-schmidt or none")] = "lstsq",
    gs_order: Annotated[str, typer.Option("--gs-order", help="idarts gram-schmidt: alpha or "
                                          "index")] = "alpha",
    decorrelate_over: Annotated[str, typer.Option("--decorrelate-over", help="idarts: "
                                                  "decorrelate an op against the ops of all "
                                                  "its node's in-edges (node) or of its own "
                                                  "edge (edge)")] = "node",
    similarity: Annotated[str, typer.Option("--similarity", help="idarts: cosine or inner "
                                            "(product) of node and decorrelated op "
                                            "output")] = "cosine",
    node_output: Annotated[str, typer.Option("--node-output", help="idarts: score against "
                                             "the node before (pre-norm) or after "
                                             "(post-norm) node normalization")] = "pre-norm",
    probe_batches: Annotated[int, typer.Option("--probe-batches", help="idarts: held-out "
                                               "batches for decorrelation")] = 4,
    unrolled: Annotated[bool, typer.Option("--unrolled", help="darts: second-order "
                                           "architecture gradient")] = False,
    seed: Annotated[int, typer.Option("--seed", help="random seed")] = 0,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="deterministic "
                                                "algorithms")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N")] = "auto",
    amp: Annotated[str, typer.Option("--amp", help="off, bf16, fp16 (CUDA only)")] = "off",
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last",
                                                help="NHWC tensors (faster on CPU and "
                                                "CUDA)")] = True,
    recompute: Annotated[str, typer.Option("--recompute", help="recompute edges in backward: "
                                           "off, full-res (cells up to the first "
                                           "reduction), all; auto = full-res on CPU, off on "
                                           "CUDA. Less memory, more time")] = "auto",
    workers: Annotated[int, typer.Option("--workers", help="data loader workers")] = 0,
    steps_per_epoch: Annotated[int | None, _opt("limit steps per epoch", "--steps-per-epoch",
                                                "--limit-batches")] = None,
    kill_after_steps: Annotated[int | None, _opt("fault injection: SIGKILL after N steps",
                                                 "--kill-after-steps", hidden=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="no progress; one JSON summary on "
                                          "stdout")] = False,
) -> None:
    """Search a DARTS cell with METHOD; writes genotype.json, config.json, metrics.jsonl,
    arch_history.json, checkpoint.pt, plots and report.json to --out.

    Under `torchrun --nproc-per-node N -m nasctl search ...` it runs data-parallel."""
    from nasctl.search import SearchConfig, run_search

    if space == "mbconv":
        _search_mbconv(out, method, dataset, data_dir, width_mult, macs_target, macs_weight,
                       macs_resolution, epochs, batch_size, lr, arch_lr, train_portion,
                       steps_per_epoch, seed, device, as_json)
        return
    if space != "cell":
        raise NasctlError(f"unknown --space {space!r} (cell or mbconv)")
    method_options: dict[str, Any] = {
        "fairdarts": {"w01": w01, "loss01": loss01, "discretization": discretization,
                      "threshold": threshold, "edge_k": edge_k},
        "idarts": {"node_norm": node_norm, "decorrelation": decorrelation,
                   "gs_order": gs_order, "decorrelate_over": decorrelate_over,
                   "similarity": similarity, "node_output": node_output},
        "darts": {"unrolled": unrolled},
    }.get(method, {})
    config = SearchConfig(
        method=method, method_options=method_options, dataset=dataset, data_dir=data_dir,
        download=download, train_portion=train_portion, augment=augment,
        ops=[o.strip() for o in ops.split(",") if o.strip()] if ops else None,
        init_channels=init_channels, layers=layers, nodes=nodes, batch_size=batch_size,
        epochs=epochs, lr=lr, lr_min=lr_min, arch_lr=arch_lr, weight_decay=weight_decay,
        grad_clip=grad_clip, seed=seed, deterministic=deterministic, device=device, amp=amp,
        channels_last=channels_last, recompute=recompute, workers=workers,
        steps_per_epoch=steps_per_epoch, probe_batches=probe_batches,
        kill_after_steps=kill_after_steps,
    )
    main = int(os.environ.get("RANK", "0")) == 0
    if as_json or not main:
        result = run_search(config, out, resume=resume)
    else:
        with _SearchProgress() as progress:
            result = run_search(config, out, resume=resume, on_event=progress.on_event)
    if not main:
        return
    summary = {
        "run_dir": str(result.run_dir), "method": method, "dataset": dataset,
        "epochs": result.epochs_run, "genotype": result.genotype.name,
        "hash": result.genotype.content_hash(),
        "cells": {name: [[op, u, v] for u, v, op in sorted(
            result.genotype.cells[name].edges(data="op"), key=lambda e: (e[1], e[0]))]
            for name in ("normal", "reduce")},
        "files": result.files, "notes": result.notes,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"search: {method} on {dataset}", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for name in ("normal", "reduce"):
        table.add_row(name, ", ".join(f"{op} {u}->{v}" for op, u, v in summary["cells"][name]))
    table.add_row("genotype", str(result.files.get("genotype", "")))
    for key, path in result.files.items():
        if key != "genotype":
            table.add_row(key, path)
    console.print(table)
    for note in result.notes:
        err_console.print(f"note: {note}")


def _search_mbconv(out: Path, method: str, dataset: str, data_dir: str | None,
                   width_mult: float, macs_target: float | None, macs_weight: float,
                   macs_resolution: int, epochs: int | None, batch_size: int | None,
                   lr: float | None, arch_lr: float | None, train_portion: float,
                   steps_per_epoch: int | None, seed: int, device: str, as_json: bool) -> None:
    from nasctl.search.mbconv_search import MBConvSearchConfig, search_mbconv

    config = MBConvSearchConfig(
        method=method, dataset=dataset, data_dir=data_dir, width_mult=width_mult,
        macs_target=None if macs_target is None else macs_target * 1e6,
        macs_weight=macs_weight, macs_resolution=macs_resolution, epochs=epochs,
        batch_size=batch_size, lr=lr, arch_lr=arch_lr, train_portion=train_portion,
        steps_per_epoch=steps_per_epoch, seed=seed, device=device)
    if as_json:
        result = search_mbconv(config, out)
    else:
        with _SearchProgress() as progress:
            result = search_mbconv(config, out, on_event=progress.on_event)
    chain = result.genotype.cells["chain"]
    layers = [str(chain.nodes[n].get("op")) for n in sorted(chain.nodes)]
    summary = {"run_dir": str(result.run_dir), "space": "mbconv", "method": method,
               "dataset": dataset, "epochs": result.epochs_run, "layers": layers,
               "macs": result.macs, "macs_target": config.macs_target,
               "files": result.files, "notes": result.notes}
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"search: {method} on {dataset}, mbconv space", box=box.SIMPLE_HEAD,
                  show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("layers", ", ".join(layers))
    table.add_row(f"MACs at {macs_resolution}px", f"{result.macs:,}")
    for key, path in result.files.items():
        table.add_row(key, path)
    console.print(table)
    for note in result.notes:
        err_console.print(f"note: {note}")


class _SearchProgress(EpochProgress):
    """A rich progress display fed by the search loop's events."""

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            self.bar.update(self.epochs, total=event["epochs"], completed=event["epoch"])
            self.bar.update(self.steps, total=event["steps"], completed=0)
        elif kind == "step":
            self.bar.update(self.steps, completed=event["step"],
                            description=f"epoch {event['epoch']}",
                            info=f"arch {event['arch_loss']:.3f}  weight "
                                 f"{event['weight_loss']:.3f}")
        elif kind == "epoch":
            self.bar.update(self.epochs, completed=event["epoch"],
                            info=f"weight acc {100 * event['weight_acc']:.1f}%  arch acc "
                                 f"{100 * event['arch_acc']:.1f}%")
            self.bar.update(self.steps, completed=0)
        elif kind == "warning":
            self.bar.console.print(f"[yellow]warning:[/] epoch {event['epoch']}: "
                                   f"{event['message']}")
        elif kind == "resumed":
            self.bar.console.print(f"resuming after epoch {event['epoch']}")
