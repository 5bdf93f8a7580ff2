"""`nasctl export` (ONNX / TensorRT with parity, latency and count validation) and
`nasctl bench` (latency per runtime and batch size)."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from nasctl.cli._out import console, err_console, print_json
from nasctl.errors import NasctlError
from nasctl.export.onnx_export import MIN_OPSET
from nasctl.export.precision import PRECISIONS

if TYPE_CHECKING:
    from nasctl.deploy.bench import BenchRow, HostInfo
    from nasctl.deploy.events import DeployEvent
    from nasctl.deploy.report_types import CountValidation, ExportReport

MAX_BATCH = 4096  # images per timed batch: far past any latency a deployment measures
_STYLE = {"pass": "green", "failed": "bold red", "unavailable": "dim", "reference": "cyan",
          "skipped": "dim"}


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("bench")(bench_cmd)


def _csv(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise NasctlError(f"{what}: give a comma-separated list")
    return items


def _batches(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text, "--batch")]
    except ValueError:
        raise NasctlError(f"--batch must be comma-separated integers, not {text!r}") from None
    if any(v < 1 for v in values):
        raise NasctlError("--batch sizes must be at least 1")
    if max(values) > MAX_BATCH:
        raise NasctlError(f"--batch sizes must be at most {MAX_BATCH}, not {max(values)}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise NasctlError(f"--batch gives {', '.join(map(str, repeated))} more than once")
    return values


def _precisions(text: str, fp16: bool, int8: bool) -> tuple[str, ...]:
    """``--precision`` plus the ``--fp16``/``--int8`` shorthands, in that order."""
    from nasctl.export.precision import parse_precisions

    extra = (["fp16"] if fp16 else []) + (["int8"] if int8 else [])
    return parse_precisions(",".join([text, *extra]))


def _at_least(minimum: int, **values: int | None) -> None:
    for flag, value in values.items():
        if value is not None and value < minimum:
            raise NasctlError(f"--{flag.replace('_', '-')} must be at least {minimum}, "
                              f"not {value}")


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """Progress on stderr (stdout stays for the table or the JSON document): a spinner on
    a terminal; off one (a log, CI) a line per stage after loading, so minutes of work
    are not silent and a refusal while loading stays the only line."""
    from nasctl.deploy.events import Stage

    if not enabled:
        yield lambda event: None
    elif not err_console.is_terminal:
        started = time.perf_counter()
        seen = {"last": ""}

        def line(event: DeployEvent) -> None:
            current = str(event)
            loading = isinstance(event, Stage) and event.loading
            if current != seen["last"] and not loading:
                err_console.print(f"[{time.perf_counter() - started:.0f} s] {escape(current)}",
                                  highlight=False, soft_wrap=True)
            seen["last"] = current
        yield line
    else:
        with err_console.status("starting...", spinner="dots") as status:
            yield lambda event: status.update(escape(str(event)))


_PRECISION_HELP = (f"comma list of {', '.join(PRECISIONS)}: one ONNX graph (and engine) "
                   "each")


def export_cmd(
    model: Annotated[str, typer.Argument(help="checkpoint (.pt), genotype file or zoo name")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")],
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="export ONNX (every "
                                       "runtime but torch consumes it)")] = True,
    trt: Annotated[bool, typer.Option("--trt", help="also build a TensorRT engine per "
                                      "precision (TensorRT 10 or 11)")] = False,
    precision: Annotated[str, typer.Option(help=_PRECISION_HELP)] = "fp32",
    fp16: Annotated[bool, typer.Option("--fp16", help="shorthand: add fp16")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="shorthand: add int8")] = False,
    dataset: Annotated[str | None, typer.Option(help="network settings for a genotype")] = None,
    channels: Annotated[int | None, typer.Option("-C", "--channels", "--C",
                                                 help="initial channels")] = None,
    layers: Annotated[int | None, typer.Option(help="number of cells")] = None,
    opset: Annotated[int, typer.Option(help=f"ONNX opset (at least {MIN_OPSET})")] = 18,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch",
                                                help="dynamic batch axis")] = False,
    exporter: Annotated[str, typer.Option(help="auto, dynamo or torchscript")] = "auto",
    runtimes: Annotated[str | None, typer.Option(help="runtimes to check (default: all "
                                                      "but torch-cuda)")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch, ORT)")] = None,
    samples: Annotated[int | None, typer.Option(
        help="held-out images for parity (default: up to 200)", show_default=False)] = None,
    parity_data: Annotated[str | None, typer.Option(
        help="dataset name or image folder (default: the checkpoint's dataset when "
             "--data-dir holds it, else digits resized, with accuracy not measured)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder holding CIFAR/ImageNet")] = None,
    atol: Annotated[float | None, typer.Option(help="override the preset's atol (judged "
                                                    "per element)")] = None,
    rtol: Annotated[float | None, typer.Option(help="override the preset's rtol")] = None,
    min_top1: Annotated[float | None, typer.Option(help="override min top-1 agreement")] = None,
    latency_runs: Annotated[int, typer.Option(help="timed runs at batch 1")] = 50,
    calib_data: Annotated[str | None, typer.Option(
        help="int8 calibration images: dataset name (train split) or image folder "
             "(default: the parity dataset when it is here)")] = None,
    calib_images: Annotated[int | None, typer.Option(
        help="int8 calibration images (default: up to 256)", show_default=False)] = None,
    calib_method: Annotated[str, typer.Option(help="minmax, entropy or percentile")] =
        "minmax",
    workspace: Annotated[int, typer.Option(help="TensorRT workspace (MiB)")] = 4096,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile max batch")] = 32,
    tf32: Annotated[bool, typer.Option("--tf32", help="fp32 TensorRT engines may use TF32 "
                                       "(parity then needs a looser --atol)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Export MODEL to ONNX, one graph per precision (model.onnx, model.fp16.onnx,
    model.int8.onnx; and engines with --trt), then check parity against PyTorch fp32 on
    labelled test images, latency and counts for every runtime and precision. Writes
    report.json. Exit 1 if a check fails."""
    from nasctl.deploy.artifacts import ExportSettings
    from nasctl.deploy.events import Stage
    from nasctl.deploy.report import ExportOptions, export_and_check
    from nasctl.deploy.runtimes import DEFAULT_RUNTIMES
    from nasctl.export.precision import CALIBRATION_METHODS
    from nasctl.export.source import load_model_source
    from nasctl.export.tensorrt import require_tensorrt

    precisions = _precisions(precision, fp16, int8)
    names = _runtime_names(runtimes, DEFAULT_RUNTIMES)
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise NasctlError(f"--exporter must be auto, dynamo or torchscript, not {exporter!r}")
    if calib_method not in CALIBRATION_METHODS:
        raise NasctlError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                          f"not {calib_method!r}")
    _at_least(1, samples=samples, latency_runs=latency_runs, calib_images=calib_images,
              workspace=workspace, max_batch=max_batch, threads=threads)
    _at_least(MIN_OPSET, opset=opset)
    for flag, value, top in (("atol", atol, math.inf), ("rtol", rtol, math.inf),
                             ("min-top1", min_top1, 1.0)):
        if value is not None and not 0 <= value <= top:  # also refuses nan
            bound = "at most 1" if top == 1.0 else "finite"
            raise NasctlError(f"--{flag} must be at least 0 and {bound}, not {value}")
    if not onnx:
        raise NasctlError("--no-onnx leaves nothing to export: every runtime but torch "
                          "consumes the ONNX graphs, and TensorRT engines are built from them")
    if trt:
        require_tensorrt()  # before loading anything: one clear line, exit 2
    settings = ExportSettings(opset=opset, dynamic_batch=dynamic_batch, exporter=exporter,
                              workspace_mib=workspace, max_batch=max_batch, tf32=tf32)
    options = ExportOptions(
        out_dir=str(out), onnx=onnx, trt=trt, precisions=precisions, settings=settings,
        runtimes=names, threads=threads, parity_samples=samples, parity_data=parity_data,
        data_dir=data_dir, atol=atol, rtol=rtol, min_top1=min_top1,
        latency_runs=latency_runs, calib_data=calib_data, calib_images=calib_images,
        calib_method=calib_method,
    )
    with _progress(not as_json) as update:
        update(Stage(f"loading {model}", loading=True))
        source = load_model_source(model, dataset=dataset, channels=channels, layers=layers)
        report = export_and_check(source, options, on_event=update)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_export(report, out)
    if not report.passed:
        raise typer.Exit(1)


def _runtime_names(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from nasctl.deploy.runtimes import RUNTIME_NAMES

    names = _csv(text, "--runtimes") if text is not None else list(default)
    unknown = [n for n in names if n not in RUNTIME_NAMES]
    if unknown:
        raise NasctlError(f"unknown runtime(s) {', '.join(unknown)} "
                          f"(known: {', '.join(RUNTIME_NAMES)})")
    return tuple(dict.fromkeys(names))


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """A table that fits 80 columns: the runtime names never shrink (ort-cuda and ort-trt
    stay apart); the other cells wrap if a terminal is narrower still."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0, min_width=8 if i == 0 else None)
    return table


def _status(status: str, detail: str = "") -> str:
    text = f"[{_STYLE.get(status, 'white')}]{status}[/]"
    return f"{text} {detail}".rstrip()


def _short_status(status: str) -> str:
    """A status as a table cell: ``ref`` for the reference, ``n/a`` for unavailable."""
    short = {"reference": "ref", "unavailable": "n/a"}.get(status, status)
    return f"[{_STYLE.get(status, 'white')}]{short}[/]"


def _print_export(report: ExportReport, out: Path) -> None:
    m = report.model
    title = (f"{escape(str(m.genotype))} ({m.dataset}, C={m.channels}, {m.layers} cells, "
             f"{m.weights.split(' (')[0]} weights)")
    table = _table(title, ("runtime", "prec", "file", "parity", "err/rms", "top-1",
                           "accuracy", "b1 ms med/p99"))
    for row in report.runtimes:
        result, stats = row.parity.result, row.latency.stats
        err = f"{result.max_abs_over_rms:.1e}" if result else ""
        top1 = f"{result.top1_agreement:.1%}" if result else ""
        accuracy = ""
        if result and result.accuracy is not None:
            accuracy = f"{result.accuracy:.1%}"
            if result.accuracy_delta is not None and row.runtime != "torch":
                accuracy += f" ({result.accuracy_delta * 100:+.1f})"
        lat = (f"{stats.median_ms:.2f} / {stats.p99_ms:.2f}" if stats
               else _short_status(row.latency.status))
        # a file is made or not, whether or not this row's runtime could run it here
        made = row.exported.status == "pass"
        table.add_row(row.runtime, row.precision,
                      "made" if made else _short_status(row.exported.status),
                      _short_status(row.parity.status), err, top1, accuracy, lat)
    console.print(table)
    console.print("file: the row's ONNX graph or engine was made; err/rms: max |error| over the "
                  "reference's RMS; top-1: agreement with torch fp32; accuracy: against the "
                  "labels (difference from fp32, points); n/a: not available here",
                  style="dim")
    reasons = {row.runtime: row.parity.reason or row.exported.reason
               for row in report.runtimes if row.parity.status == "unavailable"}
    for name, reason in reasons.items():
        console.print(f"n/a {name}: {escape(reason or '')}", style="dim")
    onnx = report.onnx.export
    if report.onnx.status == "pass" and onnx is not None:
        note = (f" (fallback: {escape(onnx.fallback_reason)})" if onnx.fallback_reason else "")
        console.print(f"ONNX: {onnx.path}, opset {onnx.opset}, {onnx.exporter} exporter"
                      f"{note}, {sum(onnx.op_counts.values())} nodes, stray ops: "
                      f"{onnx.stray_ops or 'none'}")
    for record in report.artifacts:
        what = "ONNX graph" if record.kind == "onnx" else "TensorRT engine"
        if record.status == "failed":
            console.print(f"[bold red]{record.precision} {what} failed[/]: "
                          f"{escape(record.error or '')}")
        elif record.precision != "fp32" or record.kind == "engine":
            detail = record.details
            qdq = (f", {detail['quantize_nodes']} Q / {detail['dequantize_nodes']} DQ nodes, "
                   f"calibrated on {detail['calibration']['images']} images of "
                   f"{escape(detail['calibration']['source'])} "
                   f"({detail['calibration']['method']})"
                   if detail.get("calibration") and record.kind == "onnx" else "")
            console.print(f"{record.precision} {what}: {record.path}{qdq}")
    for row in report.runtimes:
        for name, check in (("parity", row.parity), ("latency", row.latency)):
            if check.status == "failed" and check.error:
                console.print(f"[bold red]{row.runtime} {row.precision} {name}[/]: "
                              f"{escape(check.error)}")
    data = report.parity_data
    console.print(f"parity: {data.images} {escape(data.source)} test images"
                  + (", accuracy judged against fp32" if data.accuracy_judged else ""))
    for note in report.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    _print_validation(report.validation)
    floor = report.compute_floor
    ort_row = next((r for r in report.runtimes if r.runtime == "ort"
                    and r.latency.x_floor is not None), None)
    distance = (f"; ORT CPU ({ort_row.precision}) is {ort_row.latency.x_floor}x above it"
                if ort_row else "")
    console.print(f"compute floor (batch {report.options.latency_batch}): "
                  f"{floor.floor_ms:.2f} ms = MACs / measured fp32 peak "
                  f"{floor.peak_macs_per_s / 1e9:.1f} GMAC/s{distance}")
    verdict = "[green]all checks passed[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(f"{verdict}; report: {out / 'report.json'}")


def _print_validation(v: CountValidation) -> None:
    line = (f"params {v.torch.params:,} (torch)   "
            f"MACs {v.torch.macs_convfc:,} conv+FC (torch)")
    if v.onnx is not None:
        line += (f"   ONNX graph: {v.onnx.params:,} params as deployed "
                 f"({v.onnx.params_unfolded:,} with BN unfolded), "
                 f"{v.onnx.macs_convfc:,} MACs")
    console.print(line)
    for check in v.agreement:
        console.print(f"  torch vs ONNX {check.figure}: {_status(check.status)}")
    paper = v.paper
    if paper.status in ("no-reference", "not-comparable"):
        console.print(f"  paper card: {paper.status} ({escape(paper.note or '')})")
        return
    console.print(f"  paper card {paper.card}: {_status(_paper_status(paper.status))}")
    for source, row in (("torch", paper.torch), ("onnx", paper.onnx)):
        for c in row.checks if row is not None else []:
            note = f" ({escape(c.note)})" if c.note else ""
            console.print(f"    {source}: {c.figure}: ours {c.ours} vs "
                          f"{c.expected} -> {c.status}{note}")


def _paper_status(status: str) -> str:
    return {"fail": "failed", "pass": "pass"}.get(status, status)


def bench_cmd(
    model: Annotated[str, typer.Argument(help="checkpoint, genotype, zoo name, .onnx or "
                                              ".engine file")],
    backend: Annotated[str, typer.Option("--backend", "--runtimes",
                                         help="comma list of runtimes")] = "torch,ort",
    batch: Annotated[str, typer.Option(help="batch sizes, comma-separated")] = "1",
    runs: Annotated[int, typer.Option(help="timed runs per batch size")] = 100,
    warmup: Annotated[int, typer.Option(help="untimed warm-up runs")] = 10,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch, ORT)")] = None,
    precision: Annotated[str, typer.Option(help=_PRECISION_HELP)] = "fp32",
    fp16: Annotated[bool, typer.Option("--fp16", help="shorthand: add fp16")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="shorthand: add int8")] = False,
    calib_data: Annotated[str | None, typer.Option(
        help="int8 calibration images: dataset name or image folder")] = "digits",
    calib_images: Annotated[int | None, typer.Option(
        help="int8 calibration images (default: up to 256)", show_default=False)] = None,
    data_dir: Annotated[str | None, typer.Option(help="folder holding CIFAR/ImageNet")] = None,
    dataset: Annotated[str | None, typer.Option(help="network settings for a genotype")] = None,
    channels: Annotated[int | None, typer.Option("-C", "--channels", "--C",
                                                 help="initial channels")] = None,
    layers: Annotated[int | None, typer.Option(help="number of cells")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Latency per runtime, precision and batch size: median, p90, p99, throughput. A
    model is exported to the precisions' ONNX graphs (and engines where TensorRT is
    present); a given .onnx or .engine file runs at the precision it holds. Exit 1 when a
    measurement failed, 2 when nothing could be measured."""
    from nasctl.deploy.artifacts import bench_inputs
    from nasctl.deploy.bench import bench_runtimes, host_info
    from nasctl.deploy.events import Stage
    from nasctl.deploy.inputs import sample_images
    from nasctl.deploy.report import plan_rows
    from nasctl.deploy.runtimes import RUNTIME_NAMES

    names = _runtime_names(backend, RUNTIME_NAMES)
    batches = _batches(batch)
    precisions = _precisions(precision, fp16, int8)
    _at_least(1, runs=runs, calib_images=calib_images, threads=threads)
    _at_least(0, warmup=warmup)
    with tempfile.TemporaryDirectory(prefix="nasctl-bench-") as tmp, \
            _progress(not as_json) as update:
        update(Stage(f"loading {model}", loading=True))
        inputs = bench_inputs(model, names, batches, precisions, Path(tmp), dataset=dataset,
                              channels=channels, layers=layers,
                              calib_data=calib_data or "digits", calib_images=calib_images,
                              data_dir=data_dir, on_event=update)
        images = sample_images(max(batches), inputs.input_size, inputs.mean, inputs.std,
                               up_to=True)
        rows = bench_runtimes(inputs.artifacts, plan_rows(names, inputs.precisions), batches,
                              images, threads, warmup=warmup, runs=runs, on_event=update)
    if not rows:
        raise NasctlError(f"none of {', '.join(names)} runs {', '.join(inputs.precisions)}")
    host = host_info(threads)
    if as_json:
        print_json({"model": inputs.described, "precisions": list(inputs.precisions),
                    "batches": batches, "host": host.to_dict(),
                    "results": [r.to_dict() for r in rows]})
    else:
        _print_bench(rows, inputs.described, host, model)
    if not any(r.status == "pass" for r in rows) and (
            inputs.given_file or not any(r.status == "failed" for r in rows)):
        # a given file no runtime could load or run is bad input, not a failed measurement
        raise NasctlError("nothing could be measured here: " + "; ".join(
            dict.fromkeys(r.reason or r.error or "" for r in rows)))
    if any(r.status == "failed" for r in rows):
        raise typer.Exit(1)


def _print_bench(rows: list[BenchRow], described: dict[str, Any], host: HostInfo,
                 model: str) -> None:
    table = _table(f"latency: {escape(str(described.get('genotype') or model))}",
                   ("runtime", "device", "prec", "batch", "median ms", "p90 ms", "p99 ms",
                    "img/s", "runs"))
    notes = []
    for r in rows:
        if r.stats is None:
            table.add_row(r.runtime, r.device, r.precision, str(r.batch or ""),
                          _short_status(r.status), "", "", "", "")
            text = r.reason or r.error or ""
            prefix = f"{r.runtime}: "
            notes.append(text if text.startswith(prefix) else prefix + text)
            continue
        s = r.stats
        table.add_row(r.runtime, r.device, r.precision, str(s.batch), f"{s.median_ms:.3f}",
                      f"{s.p90_ms:.3f}", f"{s.p99_ms:.3f}", f"{s.throughput:.1f}", str(s.runs))
    console.print(table)
    for note in dict.fromkeys(notes):
        console.print(escape(note))
    threads = host.threads
    console.print(f"host: {host.cpu} ({host.logical_cpus} CPUs), GPU: "
                  f"{host.gpu.name if host.gpu else 'none'}, threads: torch "
                  f"{threads['torch']}, requested {threads['requested'] or 'default'}, "
                  f"OMP_NUM_THREADS {threads['OMP_NUM_THREADS'] or 'unset'}")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in host.versions.items()
                                           if v))
