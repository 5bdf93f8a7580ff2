"""`nasctl search`: differentiable architecture search (FairDARTS, iDARTS, DARTS) in any
registered search space, optionally aiming at a MAC or latency target.

The command's flags are generated from the declarations (:mod:`nasctl.search.options`):
the shared settings of :class:`~nasctl.search.SearchConfig` and every registered
method's, space's and cost's ``Options``. A new plugin's settings appear here without
touching this file. The command is built on first use, so other commands do not import
torch to start.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from nasctl.cli._out import EpochProgress, console, err_console, print_json
from nasctl.errors import NasctlError
from nasctl.runs import EpochDone, RunEvent, RunStarted, RunWarning, StepDone

HELP = """Search an architecture with METHOD in SPACE; writes genotype.json, config.json,
metrics.jsonl, arch_history.json, checkpoint.pt, plots and report.json to --out.

With --mac-target or --latency-target (and --latency-table) the search aims at that cost
of the final network at its deployment settings. Under `torchrun --nproc-per-node N -m
nasctl search ...` it runs data-parallel."""

RESUME_HELP = ("continue the search in --out from its last checkpoint with its saved "
               "settings; only runtime settings (--device, --data-dir, --download, "
               "--num-workers, --channels-last, --recompute) may be given, anything else "
               "that differs is refused (the rule nasctl train --resume follows)")


def register(app: typer.Typer) -> None:
    @app.command("search", help=HELP, add_help_option=False,
                 context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def search(ctx: typer.Context) -> None:
        command = typer.main.get_command(_search_app())
        command.main(args=list(ctx.args), prog_name="nasctl search", standalone_mode=False)


def _search_app() -> typer.Typer:
    inner = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                        rich_markup_mode=None,
                        context_settings={"help_option_names": ["-h", "--help"]})
    inner.command(help=HELP)(_generated_command())
    return inner


def _opt(help_: str, *names: str, hidden: bool = False) -> Any:
    return typer.Option(*names, help=help_, show_default=False, hidden=hidden)


def _cli_type(kind: Any) -> Any:
    """The type typer parses a declared setting as (lists as comma-separated text)."""
    args = [a for a in getattr(kind, "__args__", ()) if a is not type(None)]
    base = args[0] if args else kind
    base = getattr(base, "__origin__", base)
    return str if base in (tuple, list) else base


def declared_flags() -> list[Any]:
    """Every setting the command takes: the shared ones, then each method's, space's and
    cost's, each name once (the first declaration's help names its owner)."""
    from nasctl.search.config import CONFIG_SPECS
    from nasctl.search.cost import COSTS
    from nasctl.search.methods import METHODS
    from nasctl.search.space import SPACES

    seen: dict[str, Any] = {}
    for spec in [s for s in CONFIG_SPECS if s.cli] + METHODS.all_specs() \
            + SPACES.all_specs() + COSTS.all_specs():
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def _help(spec: Any, shared: bool) -> str:
    owner = "" if shared else spec.owner.removeprefix("--") + ": "
    default = spec.default
    if default is None or spec.is_bool:
        return owner + spec.help
    shown = ",".join(default) if isinstance(default, tuple) else default
    return f"{owner}{spec.help} (default {shown})"


def _generated_command() -> Any:
    from nasctl.search.config import FIELDS

    specs = declared_flags()
    fixed = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY,
                          annotation=Annotated[Path, _opt("run folder", "--out", "-o")]),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Path | None, _opt(
                              "TOML/JSON (or YAML with PyYAML) file of settings, named as "
                              "the flags are (channels = 8, w01 = 5)", "--config")]),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[list[str] | None, _opt(
                              "any setting, KEY=VALUE (repeatable)", "--set")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option("--resume",
                                                                  help=RESUME_HELP)]),
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(
                              "--json", help="no progress; one JSON summary on stdout")]),
    ]
    declared, aliases = [], {}
    for spec in specs:
        names = [spec.flag] + ([spec.short] if spec.short else [])
        declared.append(inspect.Parameter(
            spec.name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[_cli_type(spec.type) | None,
                                 _opt(_help(spec, spec.name in FIELDS), *names)]))
        for i, alias in enumerate(spec.aliases):
            key = f"{spec.name}__alias{i}"
            aliases[key] = spec.name
            declared.append(inspect.Parameter(
                key, inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[_cli_type(spec.type) | None, _opt("", alias, hidden=True)]))

    def search_cmd(**kwargs: Any) -> None:
        flags: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in ("out", "config", "set_", "resume", "as_json") or value is None:
                continue
            flags.setdefault(aliases.get(key, key), value)
        _run(kwargs["out"], kwargs["config"], kwargs["set_"] or [], kwargs["resume"],
             kwargs["as_json"], flags)

    search_cmd.__signature__ = inspect.Signature(fixed + declared)  # type: ignore[attr-defined]
    return search_cmd


def _assignments(items: list[str], flags: dict[str, Any]) -> dict[str, str]:
    """``--set KEY=VALUE`` as raw text (typed where the setting is declared). A setting
    given both as a flag and with ``--set`` is refused: neither silently wins."""
    from nasctl.settings import split_assignments

    out = split_assignments(items)
    both = [key for key in out if key in flags]
    if both:
        raise NasctlError(f"--set {both[0]}=... and its flag --{both[0].replace('_', '-')} are "
                          "both given; give one")
    return out


def _run(out: Path, config: Path | None, set_: list[str], resume: bool, as_json: bool,
         flags: dict[str, Any]) -> None:
    from nasctl.search import (
        resolve_search_config,
        resume_search_config,
        run_search,
        saved_search_config,
    )

    overrides = {**flags, **_assignments(set_, flags)}
    if resume:
        if config is not None:
            raise NasctlError("--resume uses the saved run's settings; drop --config")
        cfg = resume_search_config(saved_search_config(out), overrides)
    else:
        cfg = resolve_search_config(config, overrides)
        if cfg.dataset == "digits" and cfg.space == "cell" and cfg.epochs is None \
                and cfg.space_options.get("channels", 16) == 16 \
                and cfg.space_options.get("layers", 8) == 8:
            err_console.print("warning: the method's paper sizes (C=16, 8 cells, 50 epochs) "
                              "are slow on a CPU; try -C 8 --layers 5 --epochs 10",
                              highlight=False, soft_wrap=True)
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

    described = get_space(cfg.space, result.config.space_options).describe(result.genotype)
    if as_json:
        print_json(summary_doc(result, described))
        return
    _print_summary(result, described, f"search: {cfg.method} on {cfg.dataset}, "
                                      f"{cfg.space} space", warned)


def summary_doc(result: Any, described: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` summary of a finished search."""
    cfg = result.config
    return {"run_dir": str(result.run_dir), "space": cfg.space, "method": cfg.method,
            "dataset": cfg.dataset, "epochs": result.epochs_run,
            "genotype": result.genotype.name, "hash": result.genotype.content_hash(),
            **described, "fallback": result.fallback,
            "costs": [c.to_dict() for c in result.costs], "files": result.files,
            "notes": result.notes}


def _print_summary(result: Any, described: dict[str, Any], title: str,
                   warned: set[str]) -> None:
    table = Table(title=title, box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    for name, edges in described.get("cells", {}).items():
        table.add_row(name, ", ".join(f"{op} {u}->{v}" for op, u, v in edges))
    if "layers" in described:
        table.add_row("layers", ", ".join(described["layers"]))
    for cost in result.costs:
        table.add_row(cost.cost, _cost_line(cost))
    if result.fallback:
        table.add_row("fallback", "the rule kept nothing in " + ", ".join(result.fallback)
                      + "; the strongest op decided there")
    for key, path in result.files.items():
        table.add_row(key, path)
    console.print(table)
    for note in result.notes:
        if note not in warned:  # a warning shown during the run is not repeated
            err_console.print(f"note: {note}", highlight=False, soft_wrap=True)


def _cost_line(cost: Any) -> str:
    def fmt(value: float) -> str:
        return f"{value / 1e6:,.1f}M" if cost.unit == "MACs" else f"{value:,.3f} {cost.unit}"

    parts = [f"predicted {fmt(cost.predicted)}"]
    if cost.measured is not None:
        parts.append(f"measured {fmt(cost.measured)} ({cost.error_pct:+.1f}%)")
    if cost.target is not None:
        parts.insert(0, f"target {fmt(cost.target)}")
        parts.append("meets it" if cost.meets_target else "MISSES it")
    if cost.repair is not None and cost.repair.swaps:
        parts.append(f"repaired by {len(cost.repair.swaps)} swaps")
    return ", ".join(parts) + f" ({cost.network})"


class _SearchProgress(EpochProgress):
    """Progress on stderr: rich bars on a terminal, otherwise one line per epoch (a search
    under nohup is not silent for hours)."""

    def __init__(self) -> None:
        self.lines = not err_console.is_terminal
        super().__init__(err_console, bars_off_terminal=False)
        self.warned: set[str] = set()

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.bar.update(self.epochs, total=event.epochs, completed=event.epoch)
            self.bar.update(self.steps, total=event.steps, completed=0)
            if event.resumed or self.lines:
                self._line(f"search: {'resuming after' if event.resumed else 'starting at'} "
                           f"epoch {event.epoch}/{event.epochs}, {event.steps} steps an epoch")
        elif isinstance(event, StepDone):
            self.bar.update(self.steps, completed=event.step, description=f"epoch {event.epoch}",
                            info=f"arch {event.values['arch_loss']:.3f}  weight "
                                 f"{event.values['weight_loss']:.3f}")
        elif isinstance(event, EpochDone):
            info = (f"weight acc {100 * event.metrics['weight_acc']:.1f}%  arch "
                    f"acc {100 * event.metrics['arch_acc']:.1f}%")
            for name, c in event.metrics.get("costs", {}).items():
                if c.get("target") is not None:
                    info += f"  {name} {c['predicted']:.4g}/{c['target']:.4g}"
            self.bar.update(self.epochs, completed=event.epoch, info=info)
            self.bar.update(self.steps, completed=0)
            if self.lines:
                self._line(f"search: epoch {event.epoch}/{event.epochs}  {info}")
        elif isinstance(event, RunWarning) and event.message not in self.warned:
            self.warned.add(event.message)  # each warning once, on stderr
            self._line(f"warning: epoch {event.epoch}: {event.message}")

    def _line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
