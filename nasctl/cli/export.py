"""`nasctl export` (ONNX / TensorRT with parity, latency and count validation) and
`nasctl bench` (latency per runtime and batch size)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nasctl.cli._out import console, err_console, print_json
from nasctl.errors import NasctlError

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
    return values


def _precision(fp16: bool, int8: bool) -> str:
    if fp16 and int8:
        raise NasctlError("--fp16 and --int8 exclude each other")
    return "fp16" if fp16 else "int8" if int8 else "fp32"


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A spinner on stderr (stdout stays for the table or the JSON document)."""
    if not enabled:
        yield lambda event: None
        return
    with err_console.status("starting...", spinner="dots") as status:
        def update(event: dict[str, Any]) -> None:
            text = event.get("stage") or " ".join(f"{k}={v}" for k, v in event.items()
                                                  if k != "event")
            status.update(str(text))
        yield update


def export_cmd(
    model: Annotated[str, typer.Argument(help="checkpoint (.pt), genotype file or zoo name")],
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="export ONNX")] = True,
    trt: Annotated[bool, typer.Option("--trt", help="also build a TensorRT engine")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 TensorRT engine")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 TensorRT engine")] = False,
    dataset: Annotated[str | None, typer.Option(help="network settings for a genotype")] = None,
    channels: Annotated[int | None, typer.Option("--C", help="initial channels")] = None,
    layers: Annotated[int | None, typer.Option(help="number of cells")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 18,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch",
                                                help="dynamic batch axis")] = False,
    exporter: Annotated[str, typer.Option(help="auto, dynamo or torchscript")] = "auto",
    runtimes: Annotated[str, typer.Option(help="runtimes to check")] =
        "torch,ort,ort-cuda,ort-trt,trt",
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch, ORT)")] = None,
    samples: Annotated[int, typer.Option(help="images for the parity check")] = 64,
    parity_data: Annotated[str, typer.Option(help="dataset name or image folder")] = "digits",
    data_dir: Annotated[str | None, typer.Option(help="folder holding CIFAR/ImageNet")] = None,
    atol: Annotated[float | None, typer.Option(help="override the preset's atol")] = None,
    rtol: Annotated[float | None, typer.Option(help="override the preset's rtol")] = None,
    min_top1: Annotated[float | None, typer.Option(help="override min top-1 agreement")] = None,
    latency_runs: Annotated[int, typer.Option(help="timed runs at batch 1")] = 50,
    calib_data: Annotated[str | None, typer.Option(help="INT8 calibration images: dataset "
                                                        "name or image folder")] = None,
    calib_images: Annotated[int, typer.Option(help="INT8 calibration image count")] = 512,
    workspace: Annotated[int, typer.Option(help="TensorRT workspace (MiB)")] = 4096,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile max batch")] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Export MODEL to ONNX (and TensorRT), then check parity, latency and counts per
    runtime. Writes model.onnx, model.engine, report.json. Exit 1 if a check fails."""
    from nasctl.deploy.report import ExportOptions, export_and_check
    from nasctl.deploy.runtimes import RUNTIME_NAMES
    from nasctl.export.source import load_model_source
    from nasctl.export.tensorrt import require_tensorrt

    precision = _precision(fp16, int8)
    names = _csv(runtimes, "--runtimes")
    unknown = [n for n in names if n not in RUNTIME_NAMES]
    if unknown:
        raise NasctlError(f"unknown runtime(s) {', '.join(unknown)} "
                          f"(known: {', '.join(RUNTIME_NAMES)})")
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise NasctlError(f"--exporter must be auto, dynamo or torchscript, not {exporter!r}")
    if trt:
        require_tensorrt()  # before loading anything: one clear line, exit 2
    options = ExportOptions(
        out_dir=str(out), onnx=onnx, trt=trt, precision=precision, opset=opset,
        dynamic_batch=dynamic_batch, exporter=exporter, runtimes=tuple(names),
        threads=threads, parity_samples=samples, parity_data=parity_data, data_dir=data_dir,
        atol=atol, rtol=rtol, min_top1=min_top1, latency_runs=latency_runs,
        calib_data=calib_data, calib_images=calib_images, workspace_mib=workspace,
        max_batch=max_batch,
    )
    with _progress(not as_json) as update:
        update({"stage": f"loading {model}"})
        source = load_model_source(model, dataset=dataset, channels=channels, layers=layers)
        report = export_and_check(source, options, on_event=update)
    if as_json:
        print_json(report)
    else:
        _print_export(report, out)
    if not report["passed"]:
        raise typer.Exit(1)


def _table_console() -> Console:
    """The shared console on a terminal; off a terminal (a file, a pipe) a wide one, or
    rich squeezes the table into 80 columns."""
    return console if console.is_terminal else Console(width=140)


def _status(cell: dict[str, Any], detail: str = "") -> str:
    status = cell["status"]
    text = f"[{_STYLE.get(status, 'white')}]{status}[/]"
    return f"{text} {detail}".rstrip()


def _print_export(report: dict[str, Any], out: Path) -> None:
    m = report["model"]
    onnx = report["onnx"]
    title = (f"{m['genotype']} ({m['dataset']}, C={m['C']}, {m['layers']} cells, "
             f"{m['weights'].split(' (')[0]} weights)")
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("runtime", "device", "precision", "exported", "parity", "max |err|",
                   "top-1", "latency b1 (median / p99 ms)"):
        table.add_column(column, no_wrap=column != "parity")
    for row in report["runtimes"]:
        parity, latency = row["parity"], row["latency"]
        real = parity["status"] in ("pass", "failed") and "max_abs" in parity
        err = f"{parity['max_abs']:.2e}" if real else ""
        top1 = f"{parity['top1_agreement']:.1%}" if real else ""
        lat = (f"{latency['median_ms']:.2f} / {latency['p99_ms']:.2f}"
               if latency["status"] == "pass" else _status(latency))
        table.add_row(row["runtime"], row.get("device") or "", row["precision"],
                      _status(row["exported"]), _status(parity), err, top1, lat)
    _table_console().print(table)
    if onnx["status"] == "pass":
        note = (f" (fallback: {escape(onnx['fallback_reason'])})"
                if onnx["fallback_reason"] else "")
        console.print(f"ONNX: {onnx['path']}, opset {onnx['opset']}, "
                      f"{onnx['exporter']} exporter{note}, {sum(onnx['op_counts'].values())} "
                      f"nodes, stray ops: {onnx['stray_ops'] or 'none'}")
    elif onnx["status"] == "failed":
        console.print(f"[bold red]ONNX export failed[/]: {escape(onnx['error'])}")
    if report["tensorrt"]["status"] == "failed":
        console.print(f"[bold red]TensorRT build failed[/]: "
                      f"{escape(report['tensorrt']['error'])}")
    for row in report["runtimes"]:
        for key in ("parity", "latency"):
            if row[key]["status"] == "failed" and "error" in row[key]:
                console.print(f"[bold red]{row['runtime']} {key}[/]: "
                              f"{escape(row[key]['error'])}")
    _print_validation(report["validation"])
    floor = report["compute_floor"]
    ort_row = next((r for r in report["runtimes"] if r["runtime"] == "ort"
                    and "x_floor" in r["latency"]), None)
    distance = f"; ORT CPU is {ort_row['latency']['x_floor']}x above it" if ort_row else ""
    console.print(f"compute floor (batch {report['options']['latency_batch']}): "
                  f"{floor['floor_ms']:.2f} ms = MACs / measured peak "
                  f"{floor['peak_macs_per_s'] / 1e9:.1f} GMAC/s{distance}")
    verdict = "[green]all checks passed[/]" if report["passed"] else "[bold red]FAILED[/]"
    console.print(f"{verdict}; report: {out / 'report.json'}")


def _print_validation(v: dict[str, Any]) -> None:
    torch_counts = v["torch"]
    line = (f"params {torch_counts['params']:,} (torch)   "
            f"MACs {torch_counts['macs_convfc']:,} conv+FC (torch)")
    if "onnx" in v:
        onnx = v["onnx"]
        line += (f"   ONNX graph: {onnx['params']:,} params as deployed "
                 f"({onnx['params_unfolded']:,} with BN unfolded), "
                 f"{onnx['macs_convfc']:,} MACs")
    console.print(line)
    for check in v["agreement"]:
        console.print(f"  torch vs ONNX {check['figure']}: {_status(check)}")
    paper = v["paper"]
    if paper["status"] in ("no-reference", "not-comparable"):
        console.print(f"  paper card: {paper['status']} ({escape(paper['note'])})")
        return
    console.print(f"  paper card {paper['card']}: {_status({'status': _paper_status(paper)})}")
    for source in ("torch", "onnx"):
        for check in paper.get(source, {}).get("checks", []):
            note = f" ({escape(check['note'])})" if check.get("note") else ""
            console.print(f"    {source}: {check['figure']}: ours {check['ours']} vs "
                          f"{check['expected']} -> {check['status']}{note}")


def _paper_status(paper: dict[str, Any]) -> str:
    return {"fail": "failed", "pass": "pass"}.get(paper["status"], paper["status"])


def bench_cmd(
    model: Annotated[str, typer.Argument(help="checkpoint, genotype, zoo name, .onnx or "
                                              ".engine file")],
    backend: Annotated[str, typer.Option(help="comma list: torch,torch-cuda,ort,ort-cuda,"
                                              "ort-trt,trt")] = "torch,ort",
    batch: Annotated[str, typer.Option(help="batch sizes, comma-separated")] = "1",
    runs: Annotated[int, typer.Option(help="timed runs per batch size")] = 100,
    warmup: Annotated[int, typer.Option(help="untimed warm-up runs")] = 10,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch, ORT)")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 on TensorRT runtimes")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 engine (given .engine)")] = False,
    dataset: Annotated[str | None, typer.Option(help="network settings for a genotype")] = None,
    channels: Annotated[int | None, typer.Option("--C", help="initial channels")] = None,
    layers: Annotated[int | None, typer.Option(help="number of cells")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """Latency per runtime and batch size: median, p90, p99, throughput."""
    from nasctl.deploy.bench import bench_runtimes, host_info
    from nasctl.deploy.inputs import sample_images
    from nasctl.deploy.runtimes import RUNTIME_NAMES

    names = _csv(backend, "--backend")
    unknown = [n for n in names if n not in RUNTIME_NAMES]
    if unknown:
        raise NasctlError(f"unknown backend(s) {', '.join(unknown)} "
                          f"(known: {', '.join(RUNTIME_NAMES)})")
    batches = _batches(batch)
    precision = _precision(fp16, int8)
    with tempfile.TemporaryDirectory(prefix="nasctl-bench-") as tmp, \
            _progress(not as_json) as update:
        update({"stage": f"loading {model}"})
        artifacts, size, mean, std, described = _bench_artifacts(
            model, names, batches, precision, Path(tmp), dataset, channels, layers, update)
        images = sample_images(max(batches), size, mean, std)
        rows = bench_runtimes(artifacts, names, batches, images, precision, threads,
                              warmup=warmup, runs=runs, on_event=update)
    result = {"model": described, "precision": precision, "batches": batches,
              "host": host_info(threads), "results": rows}
    if as_json:
        print_json(result)
        return
    table = Table(title=f"latency: {described.get('genotype') or model}", box=box.SIMPLE_HEAD)
    for column in ("runtime", "device", "precision", "batch", "median ms", "p90 ms", "p99 ms",
                   "img/s", "runs"):
        table.add_column(column, no_wrap=True)
    notes = []
    for r in rows:
        if r["status"] != "pass":
            table.add_row(r["runtime"], r["device"], r["precision"], str(r.get("batch", "")),
                          _status(r), "", "", "", "")
            text = r.get("reason") or r.get("error", "")
            prefix = f"{r['runtime']}: "
            notes.append(text if text.startswith(prefix) else prefix + text)
            continue
        table.add_row(r["runtime"], r["device"], r["precision"], str(r["batch"]),
                      f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                      f"{r['throughput']:.1f}", str(r["runs"]))
    _table_console().print(table)
    for note in notes:
        console.print(escape(note))
    host = result["host"]
    console.print(f"host: {host['cpu']} ({host['logical_cpus']} CPUs), GPU: "
                  f"{(host['gpu'] or {}).get('name', 'none')}, threads: {host['threads']}")
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in host["versions"].items()
                                           if v))


def _bench_artifacts(model: str, names: list[str], batches: list[int], precision: str,
                     tmp: Path, dataset: str | None, channels: int | None,
                     layers: int | None, update: Any) -> tuple[Any, int, Any, Any, dict]:
    """Artifacts for the requested runtimes: given files are used as they are; a model
    source is exported to ONNX (dynamic batch when batch sizes vary) and, for trt, built
    into an engine when TensorRT is present."""
    from nasctl.data import dataset_info
    from nasctl.deploy.runtimes import Artifacts

    suffix = Path(model).suffix
    if suffix in (".onnx", ".engine"):
        if not Path(model).is_file():
            raise NasctlError(f"{model}: no such file")
        info = dataset_info(dataset or "cifar10")
        size, mean, std = _file_input(model, info)
        artifacts = Artifacts(onnx_path=model if suffix == ".onnx" else None,
                              engine_path=model if suffix == ".engine" else None,
                              cache_dir=str(tmp / "ort_trt_cache"))
        return artifacts, size, mean, std, {"spec": model, "kind": suffix[1:]}
    from nasctl.export.onnx_export import export_onnx
    from nasctl.export.source import load_model_source
    from nasctl.export.tensorrt import EngineSettings, build_engine, tensorrt_unavailable_reason

    source = load_model_source(model, dataset=dataset, channels=channels, layers=layers)
    artifacts = Artifacts(net=source.net, cache_dir=str(tmp / "ort_trt_cache"))
    dynamic = any(b != 1 for b in batches)
    if any(n.startswith(("ort", "trt")) for n in names):
        update({"stage": "exporting ONNX"})
        exported = export_onnx(source.net, tmp / "model.onnx", source.input_shape,
                               dynamic_batch=dynamic)
        artifacts.onnx_path = exported.path
    if "trt" in names and tensorrt_unavailable_reason() is None and precision != "int8":
        update({"stage": "building TensorRT engine"})
        settings = EngineSettings(precision=precision, max_batch=max(batches),
                                  opt_batch=max(batches))
        built = build_engine(tmp / "model.onnx", tmp / "model.engine", settings)
        artifacts.engine_path = built.engine_path
    return artifacts, source.input_size, source.mean, source.std, source.describe()


def _file_input(path: str, info: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Input size and normalization of an exported file: from nasctl's ONNX metadata when
    present, else the dataset's."""
    size, mean, std = info.input_size, info.mean, info.std
    if path.endswith(".onnx"):
        from nasctl.export.onnx_export import read_metadata

        meta = read_metadata(path)
        if "nasctl.input_shape" in meta:
            size = int(meta["nasctl.input_shape"].split(",")[-1])
            mean = tuple(float(v) for v in meta["nasctl.mean"].split(","))
            std = tuple(float(v) for v in meta["nasctl.std"].split(","))
    return size, mean, std
