"""`nasctl pipeline`: search -> train -> export -> parity, latency and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nasctl.cli._out import console, err_console, print_json
from nasctl.runs import EpochDone, RunStarted, StepDone


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
    latency_target: Annotated[float | None, typer.Option(
        help="latency budget in ms of the trained network on ONNX Runtime CPU (1 thread, "
             "batch 1): the search aims at it, priced from a table of this machine (measured "
             "once, then cached)", show_default=False)] = None,
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
                            device=device, search=search, train=train,
                            latency_target=latency_target)
    progress = _Progress(live=not as_json and err_console.is_terminal)
    with progress:
        summary = run_pipeline(config, out, resume=resume, on_event=progress.on_event)
    fallback = summary["search"].get("fallback_cells")
    if fallback:
        err_console.print(f"warning: no {' or '.join(fallback)}-cell op reached the FairDARTS "
                          "threshold, so those cells keep the strongest op per node (try more "
                          "--search-epochs)", markup=False, highlight=False)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if not summary["passed"]:
        raise typer.Exit(1)


class _Progress:
    """Progress on stderr: a spinner on a terminal; otherwise (a log, CI, --json) one line
    per stage and per epoch, so a long run is never silent."""

    def __init__(self, live: bool) -> None:
        self.status = err_console.status("starting...", spinner="dots") if live else None
        self.stage = ""
        self.epochs: int | None = None

    def __enter__(self) -> _Progress:
        if self.status is not None:
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def on_event(self, event: object) -> None:
        """Pipeline stages, search and training run events, export's deploy events."""
        from nasctl.deploy.events import EngineStep, Stage, Timing
        from nasctl.pipeline import PipelineStage

        line = None
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
        elif isinstance(event, EpochDone) and self.status is None:
            line = f"{self.stage}: epoch {event.epoch}/{event.epochs}"
        elif isinstance(event, PipelineStage):
            self.stage = event.stage
            line = f"{self.stage}: {event.state}"
        elif isinstance(event, Stage | Timing | EngineStep) and self.status is None:
            line = f"{self.stage}: {event}"  # an export step
        if line is not None:
            err_console.print(line, markup=False, highlight=False)
        if self.status is not None:
            self.status.update(self._describe(event))

    def _describe(self, event: object) -> str:
        if isinstance(event, StepDone):
            values = " ".join(f"{k} {v:.4g}" for k, v in event.values.items())
            return f"{self.stage}: epoch {event.epoch} step {event.step}/{event.steps} {values}"
        return f"{self.stage}: {event}"


def _print_summary(s: dict[str, Any]) -> None:
    table = Table(title=f"pipeline {s['folder']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("genotype", s["genotype"])
    table.add_row("checkpoint", s["checkpoint"])
    table.add_row("onnx", s["onnx"])
    table.add_row("discretization", _discretization(s["search"]))
    if s["test_top1"] is not None:
        table.add_row("test top-1", f"{s['test_top1']:.2f}% (epoch {s['best_epoch']}, best.pt)")
    table.add_row("params", f"{s['params']:,}" if s["params"] else "?")
    table.add_row("MACs (conv+FC)", f"{s['macs']:,}" if s["macs"] else "?")
    table.add_row("validation", str(s["validation"]))
    table.add_row("parity", ", ".join(f"{k} {v}" for k, v in s["parity"].items()))
    latency = s["latency_ms"]
    table.add_row("ORT CPU latency", f"{latency:.2f} ms (batch 1, median)" if latency else "?")
    budget = s.get("latency_budget")
    if budget:
        measured = budget.get("measured")
        table.add_row("latency budget", f"target {budget['target']:.3f} ms, predicted "
                      f"{budget['predicted']:.3f} ms, measured "
                      + (f"{measured:.3f} ms ({budget['error_pct']:+.1f}%)" if measured else "?")
                      + " (1 thread); " + ("meets it" if budget["meets_target"] else "MISSES it"))
    table.add_row("stage seconds", ", ".join(f"{k} {v}" for k, v in s["seconds"].items()))
    table.add_row("result", "[green]pass[/]" if s["passed"] else "[bold red]FAILED[/]")
    console.print(table)


def _discretization(search: dict[str, Any]) -> str:
    if search.get("fallback_cells"):
        return (f"FALLBACK in {', '.join(search['fallback_cells'])}: no op reached the "
                "threshold, strongest op per node kept")
    if "threshold" not in search:
        return "the method's rule"
    return (f"threshold {search['threshold']:g} chose both cells; last epoch "
            f"{search['ops_above_threshold']} of {search['ops']} ops >= {search['threshold']:g}, "
            f"{search['ops_below_1_minus_threshold']} <= {1 - search['threshold']:.2g}")
