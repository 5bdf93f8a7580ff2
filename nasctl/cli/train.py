"""`nasctl train` (final training, also under torchrun) and `nasctl eval` (a checkpoint's
top-1 / top-5 / loss on a test split)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nasctl.cli._out import EpochProgress, console, err_console, print_json
from nasctl.errors import NasctlError
from nasctl.runs import EpochDone, RunDone, RunEvent, RunStarted, StepDone


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)


def _opt(help_: str, *names: str) -> Any:
    return typer.Option(*names, help=help_, show_default=False)


def train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder", show_default=False)],
    genotype: Annotated[str | None, typer.Argument(
        help="genotype file, zoo name or DARTS Genotype(...) string (omit with --resume)",
        show_default=False)] = None,
    recipe: Annotated[str | None, _opt("cifar10, imagenet or digits (default: the dataset's)",
                                       "--recipe")] = None,
    config: Annotated[Path | None, _opt("TOML (or YAML with PyYAML) file of settings; may "
                                        "name a recipe", "--config")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from "
                                         "last.pt, exactly where it stopped")] = False,
    dataset: Annotated[str | None, _opt("digits, cifar10, cifar100, imagenet",
                                        "--dataset")] = None,
    data_dir: Annotated[str | None, _opt("folder holding the dataset", "--data-dir")] = None,
    epochs: Annotated[int | None, _opt("training epochs", "--epochs")] = None,
    batch_size: Annotated[int | None, _opt("global batch size (split over ranks)",
                                           "--batch-size")] = None,
    lr: Annotated[float | None, _opt("initial learning rate", "--lr")] = None,
    weight_decay: Annotated[float | None, _opt("SGD weight decay", "--weight-decay")] = None,
    channels: Annotated[int | None, _opt("initial channels C", "--channels", "-C")] = None,
    layers: Annotated[int | None, _opt("number of cells", "--layers")] = None,
    auxiliary_weight: Annotated[float | None, _opt("auxiliary loss weight (0: no head)",
                                                   "--auxiliary-weight")] = None,
    drop_path: Annotated[float | None, _opt("final drop-path probability (ramped from 0)",
                                            "--drop-path")] = None,
    cutout: Annotated[int | None, _opt("cutout size (0: off)", "--cutout")] = None,
    label_smoothing: Annotated[float | None, _opt("label smoothing", "--label-smoothing")] = None,
    grad_clip: Annotated[float | None, _opt("max grad norm (0: off)", "--grad-clip")] = None,
    seed: Annotated[int | None, _opt("random seed", "--seed")] = None,
    deterministic: Annotated[bool | None, _opt("deterministic algorithms (slower on GPU)",
                                               "--deterministic/--no-deterministic")] = None,
    amp: Annotated[str | None, _opt("mixed precision on CUDA: off, bf16, fp16", "--amp")] = None,
    device: Annotated[str | None, _opt("auto, cpu, cuda, cuda:N", "--device")] = None,
    num_workers: Annotated[int | None, _opt("data loader workers", "--num-workers")] = None,
    steps_per_epoch: Annotated[int | None, _opt("limit training batches per epoch",
                                                "--steps-per-epoch")] = None,
    steps_alias: Annotated[int | None, typer.Option("--limit-batches", hidden=True)] = None,
    eval_batches: Annotated[int | None, _opt("limit evaluation batches",
                                             "--eval-batches")] = None,
    set_: Annotated[list[str] | None, _opt("any setting, KEY=VALUE (repeatable); see "
                                           "nasctl.train.TrainConfig", "--set")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="no progress; one JSON summary "
                                          "on stdout")] = False,
) -> None:
    """Train the final network of GENOTYPE with a paper recipe; writes config.json,
    metrics.jsonl, last.pt, best.pt and report.json to --out.

    Under `torchrun --nproc-per-node N -m nasctl train ...` it trains with DDP."""
    from nasctl.genotypes.sources import read_any

    geno = read_any(genotype) if genotype is not None else None  # torch-free: fails fast
    from nasctl.train import parse_assignments, resolve_config, resume_config, train

    given = {
        "dataset": dataset, "data_dir": data_dir, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "weight_decay": weight_decay, "channels": channels, "layers": layers,
        "auxiliary_weight": auxiliary_weight, "drop_path": drop_path, "cutout": cutout,
        "label_smoothing": label_smoothing, "grad_clip": grad_clip, "seed": seed,
        "deterministic": deterministic, "amp": amp, "device": device,
        "num_workers": num_workers,
        "steps_per_epoch": steps_per_epoch if steps_per_epoch is not None else steps_alias,
        "eval_batches": eval_batches,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    assigned = parse_assignments(set_ or [])
    both = sorted(set(overrides) & set(assigned))
    if both:  # which one should win is not for nasctl to guess
        raise NasctlError(f"{', '.join(both)} given both as a flag and with --set; give it "
                          "once")
    overrides.update(assigned)
    if resume:
        if recipe is not None or config is not None:
            raise NasctlError("--resume uses the saved run's settings; drop --recipe/--config")
        cfg, recipe_name = resume_config(out, overrides), None
    else:
        if genotype is None:
            raise NasctlError("name a genotype to train (file, zoo name or string), or --resume")
        cfg, recipe_name = resolve_config(recipe, config, overrides)
    main = int(os.environ.get("RANK", "0")) == 0
    if as_json or not main:
        result = train(geno, cfg, out, resume=resume, recipe=recipe_name)
    else:
        # progress on stderr (stdout keeps the summary): bars on a terminal, a line per
        # epoch off one (a log, nohup), so hours of training are never silent
        with _TrainProgress(err_console, bars_off_terminal=False) as progress:
            result = train(geno, cfg, out, resume=resume, recipe=recipe_name,
                           on_event=progress.on_event)
    if not result.is_main:
        return
    summary = {
        "run_dir": str(result.run_dir),
        "genotype": ((geno.name if geno else None) or _saved_name(out)),
        "epochs": result.epochs,
        "resumed_from_epoch": result.start_epoch or None,
        "best_top1": result.best_top1,
        "best_epoch": result.best_epoch,
        "final": result.final,
        "elapsed_s": result.elapsed_s,
        "checkpoints": {"last": str(result.run_dir / "last.pt"),
                        "best": str(result.run_dir / "best.pt")},
    }
    if as_json:
        print_json(summary)
    else:
        _print_train_summary(summary)


def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a training checkpoint (last.pt, best.pt)",
                                               show_default=False)],
    dataset: Annotated[str | None, _opt("test split to use (default: the checkpoint's dataset)",
                                        "--dataset")] = None,
    data_dir: Annotated[str | None, _opt("folder holding the dataset", "--data-dir")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="batch size")] = 256,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N")] = "auto",
    amp: Annotated[str, typer.Option("--amp", help="off, bf16, fp16 (CUDA only)")] = "off",
    limit_batches: Annotated[int | None, _opt("evaluate only this many batches",
                                              "--eval-batches")] = None,
    limit_alias: Annotated[int | None, typer.Option("--limit-batches", hidden=True)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Top-1, top-5 and loss of CHECKPOINT on a test split."""
    if limit_batches is None:
        limit_batches = limit_alias
    from nasctl.train import evaluate_checkpoint

    if batch_size < 1 or (limit_batches is not None and limit_batches < 1):
        raise NasctlError("--batch-size and --eval-batches must be >= 1")
    if as_json:
        result = evaluate_checkpoint(checkpoint, dataset, data_dir, batch_size, device, amp,
                                     limit_batches)
        print_json(result)
        return
    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("eval", total=None)

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "eval_start":
                bar.update(task, total=event["batches"])
            else:
                bar.update(task, completed=event["batch"])

        result = evaluate_checkpoint(checkpoint, dataset, data_dir, batch_size, device, amp,
                                     limit_batches, on_event)
    table = Table(title=f"{checkpoint}", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("genotype", str(result["genotype"]))
    table.add_row("dataset", f"{result['dataset']} ({result['split']}, {result['samples']} images)")
    table.add_row("epoch", str(result["epoch"]))
    table.add_row("top-1", f"{result['top1']:.2f}%")
    table.add_row("top-5", f"{result['top5']:.2f}%")
    table.add_row("loss", f"{result['loss']:.4f}")
    console.print(table)


class _TrainProgress(EpochProgress):
    """A rich progress display fed by the training loop's events."""

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.bar.update(self.epochs, total=event.epochs, completed=event.epoch,
                            info=f"{event.device} x{event.world_size}")
            self.bar.update(self.steps, total=event.steps, completed=0)
        elif isinstance(event, StepDone):
            self.bar.update(self.steps, completed=event.step, description=f"epoch {event.epoch}",
                            info=f"loss {event.values['loss']:.3f}  "
                                 f"top-1 {event.values['top1']:.1f}%")
        elif isinstance(event, EpochDone):
            m = event.metrics
            self.bar.update(self.epochs, completed=event.epoch,
                            info=f"test top-1 {m['test_top1']:.2f}%  "
                                 f"(best {m['best_top1']:.2f}%)")
            self.bar.update(self.steps, completed=0)
            self.bar.console.print(
                f"epoch {event.epoch}/{event.epochs}  lr {m['lr']:.4g}  "
                f"train loss {m['train_loss']:.4f} top-1 {m['train_top1']:.2f}%  "
                f"test loss {m['test_loss']:.4f} top-1 {m['test_top1']:.2f}% "
                f"top-5 {m['test_top5']:.2f}% ({m['test_samples']} images)  "
                f"{m['time_s']:.1f}s"
                + ("  [green]best[/]" if event.best else ""), soft_wrap=True)
        elif isinstance(event, RunDone):
            self.bar.update(self.steps, visible=False)


def _saved_name(out: Path) -> str | None:
    import json

    try:
        return json.loads((out / "config.json").read_text())["genotype"]["name"]
    except (OSError, ValueError, KeyError):
        return None


def _print_train_summary(s: dict[str, Any]) -> None:
    table = Table(title="training finished", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    final = s["final"]
    table.add_row("genotype", str(s["genotype"]))
    table.add_row("run", s["run_dir"])
    resumed = f" (resumed at {s['resumed_from_epoch']})" if s["resumed_from_epoch"] else ""
    table.add_row("epochs", f"{s['epochs']}{resumed}")
    if final:
        table.add_row("final test", f"top-1 {final['test_top1']:.2f}%  top-5 "
                      f"{final['test_top5']:.2f}%  loss {final['test_loss']:.4f} on "
                      f"{final['test_samples']} test images")
    table.add_row("best test top-1", f"{s['best_top1']:.2f}% (epoch {s['best_epoch']})")
    table.add_row("time", f"{s['elapsed_s']:.1f}s")
    table.add_row("checkpoints", f"{s['checkpoints']['last']}, {s['checkpoints']['best']}")
    console.print(table)
