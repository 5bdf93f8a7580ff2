"""`nasctl genotypes list|show|convert|import|draw`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nasctl.cli._out import console, print_json
from nasctl.errors import NasctlError

FORMATS = ("json", "darts", "fairdarts", "nni")
genotypes_app = typer.Typer(help="List, show, convert, import and draw genotypes.",
                            no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(genotypes_app, name="genotypes")


def _render(genotype: object, fmt: str) -> str:
    from nasctl.genotypes import Genotype
    from nasctl.genotypes.io import dumps_genotype, dumps_strict

    assert isinstance(genotype, Genotype)
    if fmt == "json":
        return dumps_genotype(genotype)
    if fmt == "darts":
        return repr(genotype.to_darts())
    if fmt == "fairdarts":
        return repr(genotype.to_fairdarts())
    if fmt == "nni":
        return dumps_strict(genotype.to_nni())
    raise NasctlError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


@genotypes_app.command("list")
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """The zoo: published genotypes and paper cards."""
    from nasctl.genotypes.zoo import all_cards

    cards = all_cards()
    if as_json:
        print_json([{"name": c.name, "has_genotype": c.has_genotype, "source": c.source,
                     "reported": c.reported} for c in cards])
        return
    table = Table("name", "genotype", "CIFAR-10 error %", "params M", "MACs M",
                  title="nasctl zoo (figures as published; sources: --json)")
    for c in cards:
        r = c.reported
        err = r.get("cifar10_error", round(100 - r["cifar10_top1_acc"], 2)
                    if "cifar10_top1_acc" in r else "")
        table.add_row(c.name, "yes" if c.has_genotype else "no (card only)", str(err),
                      str(r.get("cifar10_params_M", "")), str(r.get("cifar10_macs_M", "")))
    console.print(table)


@genotypes_app.command("show")
def show_cmd(
    source: Annotated[str, typer.Argument(help="zoo name or genotype file")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json|darts|fairdarts|nni")] = "json",
) -> None:
    """Print a genotype in one of the supported formats."""
    from nasctl.genotypes.sources import read_any

    typer.echo(_render(read_any(source), fmt))


_BY_SUFFIX = {".json": "json", ".graphml": "graphml"}


def _write(genotype: object, out: Path, fmt: str) -> str:
    from nasctl import atomic
    from nasctl.genotypes import Genotype, write_genotype, write_graphml

    assert isinstance(genotype, Genotype)
    if fmt == "json":
        write_genotype(genotype, out)
    elif fmt == "graphml":
        write_graphml(genotype, out)
    else:
        atomic.write_text(out, _render(genotype, fmt) + "\n")
    return fmt


@genotypes_app.command("convert")
def convert_cmd(
    source: Annotated[str, typer.Argument(help="zoo name or genotype file (any format)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write")],
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", help="json|graphml|darts|fairdarts|nni (default: by suffix)")] = None,
) -> None:
    """Convert a genotype to another format (nasctl JSON, GraphML, DARTS, FairDARTS, NNI)."""
    from nasctl.genotypes.sources import path_exists, read_any
    from nasctl.runs import check_output_file

    if fmt is not None and fmt not in (*FORMATS, "graphml"):
        raise NasctlError(f"unknown format {fmt!r} (json, graphml, darts, fairdarts, nni)")
    check_output_file(out, [source] if path_exists(source) else [])
    if fmt is None and out.suffix.lower() not in _BY_SUFFIX:
        raise NasctlError(f"--out {out}: cannot tell the format from {out.suffix or 'no suffix'!r}"
                          "; name it .json or .graphml, or pass --format json|graphml|darts|"
                          "fairdarts|nni")
    written = _write(read_any(source), out, fmt or _BY_SUFFIX[out.suffix.lower()])
    console.print(f"wrote {out} ({written})")


@genotypes_app.command("import")
def import_cmd(
    text: Annotated[str, typer.Argument(help="a DARTS/FairDARTS Genotype(...) string or a file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="genotype JSON file to write")],
    name: Annotated[str | None, typer.Option(help="name stored in the genotype")] = None,
) -> None:
    """Import a DARTS 2-tuple or FairDARTS 3-tuple genotype into a nasctl genotype file."""
    from nasctl.genotypes import write_genotype
    from nasctl.genotypes.sources import path_exists, read_any
    from nasctl.runs import check_output_file

    check_output_file(out, [text] if path_exists(text) else [])
    genotype = read_any(text, name=name or out.name.split(".")[0])
    if name:
        genotype.name = name
    write_genotype(genotype, out)
    console.print(f"wrote {out}")


@genotypes_app.command("draw")
def draw_cmd(
    source: Annotated[str, typer.Argument(help="zoo name or genotype file")],
    out: Annotated[Path, typer.Option("--out", "-o", help=".png or .svg file")],
) -> None:
    """Draw both cells, with op names on the edges."""
    from nasctl.genotypes.draw import draw_genotype
    from nasctl.genotypes.sources import path_exists, read_any
    from nasctl.runs import check_output_file

    check_output_file(out, [source] if path_exists(source) else [])
    draw_genotype(read_any(source), out)
    console.print(f"wrote {out}")
