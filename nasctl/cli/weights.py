"""`nasctl weights import|export`: official DARTS / FairDARTS checkpoints in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nasctl.cli._out import console, print_json

weights_app = typer.Typer(help="Import official DARTS/FairDARTS weights into a nasctl "
                          "checkpoint, or export one in an official layout.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


@weights_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="official weights (.pt, .tar) or a nasctl "
                                         "checkpoint", show_default=False)],
    genotype: Annotated[str, typer.Option("--genotype", "-g", help="zoo name or genotype file "
                                          "the weights were trained with",
                                          show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="nasctl checkpoint to write",
                                      show_default=False)],
    layout: Annotated[str, typer.Option("--layout", help="auto, nasctl, darts or "
                                        "fairdarts")] = "auto",
    dataset: Annotated[str | None, typer.Option("--dataset", help="cifar10, cifar100, "
                                                "imagenet (default: from the stem and "
                                                "classifier)", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Write a checkpoint `nasctl eval`, `export` and `bench` accept."""
    from nasctl.atomic import torch_save
    from nasctl.nets.official import import_weights
    from nasctl.runs import check_output_file

    check_output_file(out, [file, genotype])
    ckpt = import_weights(file, genotype, layout, dataset)
    torch_save(out, ckpt)
    summary = {"out": str(out), "layout": ckpt["imported"]["layout"], **ckpt["network"],
               "tensors": len(ckpt["model"])}
    if as_json:
        print_json(summary)
    else:
        console.print(f"{file} ({summary['layout']} layout) -> {out}: {summary['dataset']}, "
                      f"C={summary['C']}, {summary['layers']} cells, "
                      f"{summary['num_classes']} classes")


@weights_app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="a nasctl checkpoint", show_default=False)],
    layout: Annotated[str, typer.Option("--layout", help="darts or fairdarts",
                                        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="file to write",
                                      show_default=False)],
) -> None:
    """Write the weights as the official evaluation scripts load them."""
    from nasctl.atomic import torch_save, write_json
    from nasctl.nets.official import export_weights, sidecar, sidecar_path
    from nasctl.runs import check_output_file
    from nasctl.train.checkpoint import read_checkpoint

    check_output_file(out, [checkpoint])
    ckpt = read_checkpoint(checkpoint)
    torch_save(out, export_weights(ckpt, layout))
    write_json(sidecar_path(out), sidecar(ckpt))
    console.print(f"{checkpoint} -> {out} ({layout} layout; network settings in "
                  f"{sidecar_path(out)})")
