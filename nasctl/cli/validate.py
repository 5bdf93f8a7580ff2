"""`nasctl validate` (counts vs paper cards) and `nasctl env`."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from nasctl.cli._out import console, err_console, print_json
from nasctl.errors import NasctlError
from nasctl.genotypes.limits import printable

if TYPE_CHECKING:
    from nasctl.deploy.validation import ValidationRow

_STYLE = {"pass": "green", "fail": "bold red", "explained": "yellow", "no-reference": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    app.command("env")(env_cmd)


def validate_cmd(
    sources: Annotated[list[str] | None, typer.Argument(help="zoo names or genotype files")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every zoo genotype")] = False,
    dataset: Annotated[str, typer.Option(help="cifar10 or imagenet settings")] = "cifar10",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list on stdout")] = False,
) -> None:
    """Count params and MACs of each genotype's network; compare with the papers' figures.

    Exit code 1 if any row fails."""
    from nasctl.deploy.validation import validate_genotype
    from nasctl.genotypes import zoo_names
    from nasctl.genotypes.sources import read_any

    if dataset not in ("cifar10", "cifar100", "imagenet"):
        raise NasctlError(f"--dataset must be cifar10, cifar100 or imagenet, not {dataset!r}")
    names = list(dict.fromkeys([*(sources or []), *(zoo_names() if all_ else [])]))
    if not names:
        raise NasctlError("name genotypes to validate (zoo names or files), or pass --all")
    genotypes = [read_any(n) for n in names]  # refuse bad input before the slow counting
    rows = []
    with console.status("counting...", spinner="dots") if not as_json else nullcontext():
        for genotype in genotypes:
            rows.append(validate_genotype(genotype, dataset))
    if as_json:
        print_json([r.to_dict() for r in rows])
    else:
        _print_rows(rows, dataset)
    if any(r.status == "fail" for r in rows):
        raise typer.Exit(1)


def _print_rows(rows: list[ValidationRow], dataset: str) -> None:
    table = Table(title=f"validation at {dataset} settings", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    cells = [[f"{r.params:,}", f"{r.params_with_aux:,}", f"{r.macs:,}", f"{r.macs_all:,}"]
             for r in rows]
    table.add_column("genotype", overflow="fold", min_width=8)  # folds; numbers never shrink
    table.add_column("status", no_wrap=True, min_width=max(len(r.status) for r in rows))
    for i, column in enumerate(("params", "with aux", "MACs", "MACs all")):
        table.add_column(column, no_wrap=True, justify="right",
                         min_width=max(len(c[i]) for c in cells))
    for r, numbers in zip(rows, cells, strict=True):
        table.add_row(_shown(r.name), f"[{_STYLE[r.status]}]{r.status}[/]", *numbers)
    console.print(table)
    console.print("MACs: conv+FC multiply-accumulates; MACs all: + BN, ReLU and pooling "
                  "(ptflops); batch 1, aux head excluded", style="dim")
    for r in rows:
        official = [c for c in r.checks if c.figure.startswith("official")]
        if official:
            same = sum(c.status == "pass" for c in official)
            console.print(f"{_shown(r.name)}: {same}/{len(official)} counts equal the "
                          "official code's")
        for c in r.checks:
            if c.figure.startswith("official"):
                continue
            line = (f"  [{_STYLE[c.status]}]{c.status}[/] {c.figure} published {c.expected}, "
                    f"ours {c.ours} ({c.convention})")
            console.print(line + (f": {c.note}" if c.note else ""))
        if not r.checks:
            console.print(f"{_shown(r.name)}: [cyan]no-reference[/] ({r.note})")
    counts = {s: sum(r.status == s for r in rows) for s in _STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    err_console.print(f"{len(rows)} genotypes: {summary}")


def _shown(name: str) -> str:
    """A name from a file, as rich markup that prints it literally (no escape codes, no
    markup of its own)."""
    return escape(printable(name))


def env_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Versions of Python, torch, ONNX, ONNX Runtime (and providers), TensorRT; devices."""
    from nasctl.envinfo import environment

    info = environment()
    if as_json:
        print_json(info)
        return
    table = Table("component", "value", show_header=False)
    for key, value in info.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    console.print(table)
