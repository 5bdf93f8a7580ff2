"""`nasctl latency table` (measure a latency table for a deployment) and `nasctl latency
predict` (predict models' latency from a table, optionally checked by measuring)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nasctl.cli._out import console, err_console, print_json
from nasctl.errors import NasctlError

if TYPE_CHECKING:
    from nasctl.latency.check import PredictRow
    from nasctl.latency.table import LatencyTable
    from nasctl.nets.units import Deployment

SPACES = ("cell", "mbconv")
DEFAULT_DATASET = {"cell": "cifar10", "mbconv": "imagenet"}

latency_app = typer.Typer(help="Latency tables per runtime and predictions from them.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(latency_app, name="latency")


def _deployment(space: str, dataset: str | None, channels: int | None, layers: int | None,
                ops: str | None, nodes: int, layout: str, width_mult: float) -> Deployment:
    from nasctl.nets.network import dataset_settings

    if space not in SPACES:
        raise NasctlError(f"--space must be one of {', '.join(SPACES)}, not {space!r}")
    ds_name = dataset or DEFAULT_DATASET[space]
    ds = dataset_settings(ds_name)
    if space == "cell":
        from nasctl.genotypes.spaces import DARTS_OPS
        from nasctl.nets.cell_units import CellDeployment

        names = [o.strip() for o in ops.split(",") if o.strip()] if ops else list(DARTS_OPS)
        unknown = [o for o in names if o not in DARTS_OPS]
        if unknown or not names:
            raise NasctlError(f"--ops takes a comma list of {', '.join(DARTS_OPS)}; "
                              f"not {', '.join(unknown) or 'empty'}")
        if nodes < 1:
            raise NasctlError(f"--nodes must be at least 1, not {nodes}")
        return CellDeployment(names, ds_name, channels, layers, nodes)
    from nasctl.nets.chain_units import ChainDeployment
    from nasctl.nets.mbconv import scaled
    from nasctl.search.mbconv import LAYOUTS

    if channels is not None or layers is not None or ops is not None:
        raise NasctlError("-C, --layers and --ops are cell-space settings; the mbconv chain "
                          "takes --layout and --width-mult")
    if layout not in LAYOUTS:
        raise NasctlError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if width_mult <= 0:
        raise NasctlError(f"--width-mult must be positive, not {width_mult}")
    return ChainDeployment(scaled(LAYOUTS[layout], width_mult), ds.input_size,
                           ds.num_classes, dataset=ds_name)


def table_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="the table file to write")],
    space: Annotated[str, typer.Option(help="cell or mbconv")] = "cell",
    dataset: Annotated[str | None, typer.Option(
        help="deployment settings (cell: cifar10; mbconv: imagenet)")] = None,
    channels: Annotated[int | None, typer.Option("-C", "--channels", "--C",
                                                 help="cell: initial channels")] = None,
    layers: Annotated[int | None, typer.Option(help="cell: number of cells")] = None,
    ops: Annotated[str | None, typer.Option(help="cell: the search's op list, comma "
                                                 "separated (default: the DARTS ops)")] = None,
    nodes: Annotated[int, typer.Option(help="cell: intermediate nodes per cell")] = 4,
    layout: Annotated[str, typer.Option(help="mbconv: the chain layout")] = "proxyless-s2",
    width_mult: Annotated[float, typer.Option(help="mbconv: width multiplier")] = 1.0,
    runtime: Annotated[str, typer.Option(help="ort, ort-cuda or ort-trt")] = "ort",
    precision: Annotated[str, typer.Option(help="fp32 or fp16")] = "fp32",
    threads: Annotated[int, typer.Option(help="intra-op threads")] = 1,
    batch: Annotated[int, typer.Option(help="batch size")] = 1,
    calibration: Annotated[int, typer.Option(
        help="whole random networks timed to fit the glue and in-network slowdown")] = 12,
    rounds: Annotated[int, typer.Option(help="timing rounds per unit")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Measure a latency table: every unit of the final network at its deployment settings
    on RUNTIME, plus whole calibration networks for what cannot be timed alone."""
    from nasctl.latency.build import build_table
    from nasctl.latency.measure import MeasureSettings, check_runtime
    from nasctl.latency.samples import calibration_genotypes

    for flag, value in (("threads", threads), ("batch", batch), ("rounds", rounds)):
        if value < 1:
            raise NasctlError(f"--{flag} must be at least 1, not {value}")
    if calibration < 0:
        raise NasctlError(f"--calibration must be at least 0, not {calibration}")
    settings = MeasureSettings(runtime=runtime, precision=precision, threads=threads,
                               batch=batch, rounds=rounds)
    check_runtime(settings)  # before building anything: one line, exit 2
    deployment = _deployment(space, dataset, channels, layers, ops, nodes, layout, width_mult)
    networks = calibration_genotypes(deployment, calibration)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[what]}"),
                   console=err_console, disable=as_json or not err_console.is_terminal)
    with bar:
        task = bar.add_task("latency table", total=None, what="")

        def update(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, what=escape(what[:40]))

        table = build_table(deployment, settings, out, networks, update)
    if as_json:
        print_json(_table_summary(table))
    else:
        _print_table_summary(table)


def _table_summary(table: LatencyTable) -> dict[str, object]:
    methods: dict[str, int] = {}
    for entry in table.entries.values():
        methods[entry.method] = methods.get(entry.method, 0) + 1
    return {"path": table.path, "keys": table.keys, "entries": len(table.entries),
            "methods": methods, "fit": table.fit}


def _print_table_summary(table: LatencyTable) -> None:
    from nasctl.latency.table import describe_settings

    summary = _table_summary(table)
    k = table.keys
    console.print(f"{table.path}: {summary['entries']} units of "
                  f"{escape(describe_settings(k['settings']))}; {k['runtime']} "
                  f"{k['runtime_version']} {k['precision']}, {k['threads']} thread(s), "
                  f"batch {k['batch']}, on {escape(str(k['device']))}", highlight=False)
    console.print("units: " + ", ".join(f"{n} {m}" for m, n in summary["methods"].items()),
                  highlight=False)
    slowdown = table.fit.get("slowdown")
    if isinstance(slowdown, float | int):
        console.print(f"timed units run x{slowdown:.2f} as long inside a network",
                      highlight=False)
    networks = table.fit.get("networks", [])
    if networks:
        errors = [100 * (n["predicted_ms"] - n["measured_ms"]) / n["measured_ms"]
                  for n in networks]
        console.print(f"calibration: {len(networks)} networks, fitted within "
                      f"{min(errors):+.1f}% .. {max(errors):+.1f}%", highlight=False)


def predict_cmd(
    models: Annotated[list[str], typer.Argument(help="genotype files, zoo names or "
                                                      "checkpoints")],
    table: Annotated[Path, typer.Option(help="the latency table")],
    measure: Annotated[bool, typer.Option("--measure", help="also export and time each "
                                          "model on the table's runtime")] = False,
    allow_foreign_table: Annotated[bool, typer.Option(
        "--allow-foreign-table", help="use a table measured under other keys")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Predict each MODEL's latency at the table's settings from the table; --measure
    checks the prediction against a measurement."""
    from nasctl.latency.check import check_table, predict_models
    from nasctl.latency.table import load_table

    loaded = load_table(table)
    foreign = check_table(loaded, allow_foreign_table)
    with err_console.status("", spinner="dots") if measure and not as_json \
            and err_console.is_terminal else _Quiet() as status:
        rows = predict_models(loaded, models, measure,
                              lambda what: status.update(escape(what)) if status else None)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    _print_rows(rows, loaded, measure)
    if foreign:
        console.print(f"foreign table: {escape('; '.join(foreign))}", style="yellow")


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _print_rows(rows: list[PredictRow], table: LatencyTable, measured: bool) -> None:
    from nasctl.latency.table import describe_settings

    k = table.keys
    title = (f"{escape(describe_settings(k['settings']))}: {k['runtime']} {k['precision']}, "
             f"{k['threads']} thread(s), batch {k['batch']}")
    console.print(title, highlight=False)
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    columns = ["model", "predicted ms"] + (["measured ms", "p10-p90", "error"] if measured
                                           else [])
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right", no_wrap=i == 0,
                       max_width=28 if i == 0 else None)
    for r in rows:
        cells = [escape(r.model), f"{r.predicted_ms:.3f}"]
        if measured and r.measured_ms is not None:
            style = "green" if abs(r.error_pct or 0.0) <= 10 else "yellow"
            cells += [f"{r.measured_ms:.3f}", f"{r.measured_p10_ms:.2f}-{r.measured_p90_ms:.2f}",
                      f"[{style}]{r.error_pct:+.1f}%[/]"]
        out.add_row(*cells)
    console.print(out)
    speeds = [r.host_speed for r in rows if r.host_speed is not None]
    if speeds:
        console.print(f"measured: {k['runtime']} {k['precision']}, {k['threads']} thread(s), "
                      f"batch {k['batch']}, scaled to the host's speed when the table was made "
                      f"(its reference network re-timed each round: the host is x"
                      f"{sorted(speeds)[len(speeds) // 2]:.2f} as slow now); error: predicted "
                      f"against measured", style="dim", highlight=False)


latency_app.command("table")(table_cmd)
latency_app.command("predict")(predict_cmd)
