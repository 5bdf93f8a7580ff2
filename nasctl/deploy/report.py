"""`nasctl export` as a library call: export ONNX (and a TensorRT engine), then check every
runtime for parity and latency, count params/MACs on the PyTorch model and on the ONNX
graph, compare with the paper card, and write report.json."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.deploy.runtimes import Artifacts, Runtime, make_runtime
from nasctl.errors import BackendUnavailable, NasctlError

if TYPE_CHECKING:
    import numpy as np

    from nasctl.export.source import ModelSource

Event = Callable[[dict[str, Any]], None]
DEFAULT_RUNTIMES = ("torch", "ort", "ort-cuda", "ort-trt", "trt")
GPU_PRECISION_RUNTIMES = ("ort-trt", "trt", "torch-cuda")


@dataclass
class ExportOptions:
    out_dir: str
    onnx: bool = True
    trt: bool = False
    precision: str = "fp32"
    opset: int = 18
    dynamic_batch: bool = False
    exporter: str = "auto"
    simplify: bool = True
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    threads: int | None = None
    parity_samples: int = 64
    parity_data: str = "digits"
    data_dir: str | None = None
    atol: float | None = None
    rtol: float | None = None
    min_top1: float | None = None
    latency_batch: int = 1
    latency_runs: int = 50
    warmup: int = 5
    calib_data: str | None = None
    calib_images: int = 512
    calib_batch: int = 8
    workspace_mib: int = 4096
    max_batch: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


def runtime_precision(name: str, precision: str) -> str:
    """fp16/int8 apply to the TensorRT runtimes (and torch on CUDA for fp16); the others
    run the fp32 graph and are held to fp32 tolerances."""
    if name in GPU_PRECISION_RUNTIMES and not (name == "torch-cuda" and precision == "int8"):
        return precision
    return "fp32"


def export_and_check(source: ModelSource, options: ExportOptions,
                     on_event: Event | None = None) -> dict[str, Any]:
    """Run the whole export; returns the report (also written to out_dir/report.json).
    Raises NasctlError only for bad input (e.g. --trt without TensorRT); failures of
    individual runtimes are rows in the report."""
    from nasctl.atomic import write_json
    from nasctl.deploy.bench import host_info
    from nasctl.export.tensorrt import require_tensorrt

    emit = on_event or (lambda event: None)
    if options.trt:
        require_tensorrt()  # fail before minutes of export work
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "model": source.describe(),
        "options": {k: v for k, v in vars(options).items() if k != "extra"},
        "host": host_info(options.threads),
    }
    artifacts = Artifacts(net=source.net, cache_dir=str(out / "ort_trt_cache"))
    report["onnx"] = _export_onnx(source, options, out, artifacts, emit)
    report["tensorrt"] = _build_engine(source, options, out, artifacts, emit)

    emit({"event": "stage", "stage": "parity inputs"})
    images = _parity_inputs(source, options)
    reference = _run_chunks(_torch_reference(artifacts, options), images, _chunk(options))
    rows = []
    for name in options.runtimes:
        emit({"event": "stage", "stage": f"runtime {name}"})
        rows.append(_check_runtime(name, options, artifacts, images, reference, report))
    report["runtimes"] = rows
    emit({"event": "stage", "stage": "counting"})
    report["validation"] = _validation(source, artifacts)
    report["compute_floor"] = _compute_floor(report, options)
    report["passed"] = _passed(report)
    write_json(out / "report.json", report)
    return report


def _export_onnx(source: ModelSource, options: ExportOptions, out: Path,
                 artifacts: Artifacts, emit: Event) -> dict[str, Any]:
    if not options.onnx and not options.trt:
        return {"status": "skipped"}
    from nasctl import __version__
    from nasctl.export.onnx_export import export_onnx

    emit({"event": "stage", "stage": "export onnx"})
    metadata = {
        "nasctl.version": __version__,
        "nasctl.genotype": source.genotype.name or "",
        "nasctl.genotype_sha256": source.genotype.content_hash(),
        "nasctl.dataset": source.dataset,
        "nasctl.input_shape": ",".join(map(str, ["N" if options.dynamic_batch else 1,
                                                 *source.input_shape])),
        "nasctl.mean": ",".join(f"{v:.8g}" for v in source.mean),
        "nasctl.std": ",".join(f"{v:.8g}" for v in source.std),
        "nasctl.weights": "trained" if source.trained else "random",
    }
    try:
        result = export_onnx(source.net, out / "model.onnx", source.input_shape,
                             opset=options.opset, dynamic_batch=options.dynamic_batch,
                             metadata=metadata, exporter=options.exporter,  # type: ignore[arg-type]
                             simplify=options.simplify)
    except NasctlError as exc:
        return {"status": "failed", "error": str(exc)}
    artifacts.onnx_path = result.path
    return {"status": "pass", **result.to_dict()}


def _build_engine(source: ModelSource, options: ExportOptions, out: Path,
                  artifacts: Artifacts, emit: Event) -> dict[str, Any]:
    if not options.trt:
        return {"status": "skipped"}
    if artifacts.onnx_path is None:
        return {"status": "failed", "error": "no ONNX model to build from"}
    from nasctl.deploy.inputs import sample_images
    from nasctl.export.tensorrt import EngineSettings, build_engine

    emit({"event": "stage", "stage": f"build TensorRT engine ({options.precision})"})
    calib_cache = out / "calibration.cache"
    settings = EngineSettings(
        precision=options.precision, workspace_mib=options.workspace_mib,
        max_batch=options.max_batch, timing_cache=str(out / "timing.cache"),
        calib_cache=str(calib_cache), calib_batch=options.calib_batch,
        calib_source=options.calib_data,
    )
    images = None
    if options.precision == "int8" and not calib_cache.exists():
        if options.calib_data is None:
            return {"status": "failed",
                    "error": "--int8 needs --calib-data (a dataset name or an image folder)"}
        images = sample_images(options.calib_images, source.input_size, source.mean,
                               source.std, source=options.calib_data, split="train",
                               data_dir=options.data_dir)
    try:
        build = build_engine(artifacts.onnx_path, out / "model.engine", settings, images, emit)
    except NasctlError as exc:
        return {"status": "failed", "error": str(exc)}
    artifacts.engine_path = build.engine_path
    if calib_cache.exists():
        artifacts.calib_cache = str(calib_cache)
    return {"status": "pass", **build.to_dict()}


def _parity_inputs(source: ModelSource, options: ExportOptions) -> np.ndarray:
    from nasctl.deploy.inputs import sample_images

    return sample_images(options.parity_samples, source.input_size, source.mean, source.std,
                         source=options.parity_data, split="test", data_dir=options.data_dir)


def _chunk(options: ExportOptions) -> int:
    """Parity batch size: a static-batch graph takes exactly one image."""
    return 16 if options.dynamic_batch else 1


def _torch_reference(artifacts: Artifacts, options: ExportOptions) -> Runtime:
    runtime = make_runtime("torch", "fp32", options.threads)
    runtime.load(artifacts)
    return runtime


def _run_chunks(runtime: Runtime, images: np.ndarray, chunk: int) -> np.ndarray:
    import numpy as np

    return np.concatenate([runtime.run(images[i:i + chunk])
                           for i in range(0, len(images), chunk)])


def _cell(status: str, **details: Any) -> dict[str, Any]:
    return {"status": status, **details}


def _check_runtime(name: str, options: ExportOptions, artifacts: Artifacts,
                   images: np.ndarray, reference: np.ndarray,
                   report: dict[str, Any]) -> dict[str, Any]:
    from nasctl.deploy.bench import measure
    from nasctl.deploy.parity import compare_outputs, tolerance_for

    precision = runtime_precision(name, options.precision)
    row: dict[str, Any] = {"runtime": name, "precision": precision}
    try:
        runtime = make_runtime(name, precision, options.threads)
    except BackendUnavailable as exc:
        reason = str(exc)
        return {**row, "device": None, "exported": _cell("unavailable", reason=reason),
                "parity": _cell("unavailable", reason=reason),
                "latency": _cell("unavailable", reason=reason)}
    row["device"] = runtime.device
    row["exported"] = _exported_cell(name, report)
    missing = (None if row["exported"]["status"] in ("pass", "reference")
               else f"no {'engine' if name == 'trt' else 'ONNX model'} to run")
    reason = runtime.unavailable_reason() or missing or runtime.try_load(artifacts)
    if reason is not None:
        return {**row, "parity": _cell("unavailable", reason=reason),
                "latency": _cell("unavailable", reason=reason)}
    try:
        # the torch row is the reference itself: its outputs are already computed
        outputs = reference if name == "torch" else _run_chunks(runtime, images,
                                                                _chunk(options))
        tolerance = tolerance_for(precision, options.atol, options.rtol, options.min_top1)
        result = compare_outputs(reference, outputs, tolerance, precision)
        status = "reference" if name == "torch" else ("pass" if result.passed else "failed")
        row["parity"] = _cell(status, **result.to_dict())
    except Exception as exc:  # a runtime crashing on real inputs is a failed check, not a crash
        row["parity"] = _cell("failed", error=_error_line(exc))
    try:
        batch = images[: options.latency_batch]
        if len(batch) < options.latency_batch:
            batch = images[:1].repeat(options.latency_batch, axis=0)
        stats = measure(runtime, batch, warmup=options.warmup, runs=options.latency_runs)
        row["latency"] = _cell("pass", **stats.to_dict())
    except Exception as exc:
        row["latency"] = _cell("failed", error=_error_line(exc))
    return row


def _exported_cell(name: str, report: dict[str, Any]) -> dict[str, Any]:
    if name.startswith("torch"):
        return _cell("reference")
    part = report["tensorrt"] if name == "trt" else report["onnx"]
    status = part["status"]
    if status == "skipped":
        what = "no --trt" if name == "trt" else "no --onnx"
        return _cell("unavailable", reason=f"not exported ({what})")
    if status == "failed":
        return _cell("failed", error=part.get("error"))
    return _cell("pass", path=part.get("engine_path") or part.get("path"))


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    loc = f" at {os.path.basename(where[0].filename)}:{where[0].lineno}" if where else ""
    return f"{type(exc).__name__}: {text[0] if text else ''}{loc}"


def _validation(source: ModelSource, artifacts: Artifacts) -> dict[str, Any]:
    """Params and MACs on the torch model and on the ONNX graph; they must agree. Both are
    compared with the paper card when the network is built at the paper's settings."""
    import torch

    from nasctl.deploy.onnx_count import count_onnx
    from nasctl.nets import build_network
    from nasctl.nets.counting import count_macs, count_params

    params = count_params(source.net)
    macs = count_macs(source.net, source.input_size)
    with torch.device("meta"):  # the auxiliary head's size, for with-aux paper figures
        aux_net = build_network(source.genotype, dataset=source.dataset, C=source.channels,
                                layers=source.layers, num_classes=source.num_classes,
                                auxiliary=True)
    aux = count_params(aux_net).aux
    result: dict[str, Any] = {
        "torch": {"params": params.without_aux, "params_aux_head": aux,
                  "macs_convfc": macs.convfc, "macs_all": macs.all},
    }
    checks = []
    if artifacts.onnx_path is not None:
        onnx_counts = count_onnx(artifacts.onnx_path)
        result["onnx"] = onnx_counts.to_dict()
        checks = [
            {"figure": "macs_convfc", "torch": macs.convfc, "onnx": onnx_counts.macs_convfc},
            {"figure": "params (BN unfolded)", "torch": macs.params_used,
             "onnx": onnx_counts.params_unfolded},
        ]
        for check in checks:
            check["status"] = "pass" if check["torch"] == check["onnx"] else "failed"
    result["agreement"] = checks
    result["paper"] = _paper(source, params.without_aux, aux, macs.convfc, macs.all,
                             result.get("onnx"))
    return result


def _paper(source: ModelSource, params: int, aux: int, macs: int, macs_all: int,
           onnx_counts: dict[str, Any] | None) -> dict[str, Any]:
    from nasctl.deploy.validation import find_card, validate_counts
    from nasctl.nets import dataset_settings

    card = find_card(source.genotype)
    if card is None:
        return {"status": "no-reference", "note": "no paper card for this genotype"}
    standard = dataset_settings(source.dataset)
    if source.dataset not in ("cifar10", "cifar100", "imagenet") or (
            source.channels, source.layers, source.num_classes) != (
            standard.channels, standard.layers, standard.num_classes):
        return {"status": "not-comparable", "card": card.name,
                "note": f"built with dataset={source.dataset}, C={source.channels}, "
                        f"{source.layers} cells; the card's figures are for the papers' "
                        "CIFAR (C=36, 20 cells) and ImageNet (C=48, 14 cells) networks"}
    name = source.genotype.name or card.name
    rows = {"torch": validate_counts(name, source.dataset, params, params + aux, macs,
                                     macs_all, card).to_dict()}
    if onnx_counts is not None:
        unfolded = onnx_counts["params_unfolded"]
        rows["onnx"] = validate_counts(name, source.dataset, unfolded, unfolded + aux,
                                       onnx_counts["macs_convfc"], macs_all, card).to_dict()
    statuses = [row["status"] for row in rows.values()]
    worst = next((s for s in ("fail", "explained", "pass") if s in statuses), "no-reference")
    return {"status": worst, "card": card.name, **rows}


def _compute_floor(report: dict[str, Any], options: ExportOptions) -> dict[str, Any]:
    """Batch-1 CPU floor: conv+FC MACs over this CPU's measured peak multiply-add rate;
    each CPU latency row gets its distance from it."""
    from nasctl.deploy.bench import peak_macs_per_second

    peak = peak_macs_per_second(threads=options.threads, seconds=0.5)
    macs = report["validation"]["torch"]["macs_convfc"] * options.latency_batch
    floor_ms = macs / peak * 1000.0
    for row in report["runtimes"]:
        latency = row["latency"]
        if row.get("device") == "cpu" and latency["status"] == "pass":
            latency["x_floor"] = round(latency["median_ms"] / floor_ms, 2)
    return {"peak_macs_per_s": round(peak), "threads": options.threads,
            "macs": macs, "floor_ms": float(f"{floor_ms:.4g}")}


def _passed(report: dict[str, Any]) -> bool:
    if report["onnx"]["status"] == "failed" or report["tensorrt"]["status"] == "failed":
        return False
    for row in report["runtimes"]:
        if "failed" in (row["parity"]["status"], row["latency"]["status"]):
            return False
    validation = report["validation"]
    if any(c["status"] != "pass" for c in validation["agreement"]):
        return False
    return validation["paper"]["status"] != "fail"
