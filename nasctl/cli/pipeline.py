"""`nasctl pipeline`: search -> train -> export -> parity, latency and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nasctl.cli._out import console, print_json


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_cmd)


def pipeline_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="pipeline folder")],
    method: Annotated[str, typer.Option(help="fairdarts | idarts | darts")] = "fairdarts",
    dataset: Annotated[str, typer.Option(help="digits (embedded) | cifar10 | cifar100 | "
                                         "imagenet")] = "digits",
    data_dir: Annotated[str | None, typer.Option(help="dataset folder (not for digits)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    search_epochs: Annotated[int | None, typer.Option(help="search epochs")] = None,
    search_steps: Annotated[int | None, typer.Option(
        help="search steps per epoch (default: the whole data half)")] = None,
    augment: Annotated[bool | None, typer.Option(
        "--augment/--no-augment", show_default=False,
        help="search augmentation (default: on for CIFAR/ImageNet, off for digits)")] = None,
    train_epochs: Annotated[int | None, typer.Option(help="training epochs")] = None,
    train_steps: Annotated[int | None, typer.Option(
        help="training steps per epoch (default: the whole training set)")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="skip complete stages, resume an interrupted one")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="summary as JSON")] = False,
) -> None:
    """Search, train, export to ONNX and check the result, each stage in its own folder.

    On the embedded digits dataset the defaults finish in minutes on a CPU. Exit code 1
    if parity or validation fails."""
    from nasctl.pipeline import PipelineConfig, run_pipeline

    search: dict[str, Any] = {}
    if search_epochs is not None:
        search["epochs"] = search_epochs
    if search_steps is not None:
        search["steps_per_epoch"] = search_steps
    if augment is not None:
        search["augment"] = augment
    train: dict[str, Any] = {}
    if train_epochs is not None:
        train["epochs"] = train_epochs
    if train_steps is not None:
        train["steps_per_epoch"] = train_steps
    config = PipelineConfig(method=method, dataset=dataset, data_dir=data_dir, seed=seed,
                            device=device, search=search, train=train)
    with console.status("starting...", spinner="dots") as status:
        def on_event(event: dict[str, Any]) -> None:
            if as_json:
                return
            if event.get("event") == "stage" and "state" in event:
                console.print(f"[bold]{event['stage']}[/]: {event['state']}")
            status.update(_describe(event))

        summary = run_pipeline(config, out, resume=resume, on_event=on_event)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if not summary["passed"]:
        raise typer.Exit(1)


def _describe(event: dict[str, Any]) -> str:
    parts = [str(event.get("stage") or event.get("event", ""))]
    for key in ("epoch", "step", "loss", "top1"):
        if key in event:
            value = event[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


def _print_summary(s: dict[str, Any]) -> None:
    table = Table(title=f"pipeline {s['folder']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("genotype", s["genotype"])
    table.add_row("checkpoint", s["checkpoint"])
    table.add_row("onnx", s["onnx"])
    if s["test_top1"] is not None:
        table.add_row("test top-1", f"{s['test_top1']:.2f}% (epoch {s['best_epoch']}, best.pt)")
    table.add_row("params", f"{s['params']:,}" if s["params"] else "?")
    table.add_row("MACs (conv+FC)", f"{s['macs']:,}" if s["macs"] else "?")
    table.add_row("validation", str(s["validation"]))
    table.add_row("parity", ", ".join(f"{k} {v}" for k, v in s["parity"].items()))
    latency = s["latency_ms"]
    table.add_row("ORT CPU latency", f"{latency:.2f} ms (batch 1, median)" if latency else "?")
    table.add_row("stage seconds", ", ".join(f"{k} {v}" for k, v in s["seconds"].items()))
    table.add_row("result", "[green]pass[/]" if s["passed"] else "[bold red]FAILED[/]")
    console.print(table)
