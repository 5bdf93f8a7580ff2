"""`nasctl export` as a library call: make the graphs (and engines) of each requested
precision, check every (runtime, precision) for parity against the PyTorch fp32 reference
on held-out labelled images and for latency, count params/MACs on the PyTorch model and on
the ONNX graph, compare with the paper card, and write report.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nasctl.deploy.artifacts import ArtifactPlan, Prepared, onnx_metadata, prepare_artifacts
from nasctl.deploy.events import OnDeployEvent, Stage
from nasctl.deploy.export_inputs import (
    ParityInputs,
    calibration_for,
    calibration_source,
    parity_inputs,
)
from nasctl.deploy.report_types import (
    ComputeFloor,
    CountAgreement,
    CountValidation,
    ExportedCheck,
    ExportOptions,
    ExportReport,
    LatencyCheck,
    OnnxInfo,
    PaperComparison,
    ParityCheck,
    RuntimeRow,
    TorchCounts,
)
from nasctl.deploy.runtime import Artifacts, Runtime
from nasctl.deploy.runtimes import RUNTIMES, make_runtime
from nasctl.export.precision import precision_row

if TYPE_CHECKING:
    import numpy as np

    from nasctl.deploy.onnx_count import OnnxCounts
    from nasctl.export.source import ModelSource

RANDOM_WEIGHTS_NOTE = ("random weights: accuracy figures mean nothing; reduced precisions "
                       "are judged on top-1 agreement with fp32 only")


def plan_rows(runtimes: tuple[str, ...], precisions: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs to check: each runtime at each requested precision it
    runs (torch's fp32 row is the reference)."""
    return [(name, p) for name in runtimes for p in precisions
            if p in RUNTIMES[name].precisions]


def export_and_check(source: ModelSource, options: ExportOptions,
                     on_event: OnDeployEvent | None = None) -> ExportReport:
    """Run the whole export; returns the report (also written to out_dir/report.json).
    Raises NasctlError only for bad input (e.g. --trt without TensorRT), found before
    anything is written; failures of individual files and runtimes are records and rows
    in the report. out_dir is built in a temporary sibling and replaced whole at the end,
    so an earlier export there stays intact until the new one is complete."""
    from nasctl.atomic import write_json
    from nasctl.export.tensorrt import require_tensorrt
    from nasctl.runs import open_output

    emit = on_event or (lambda event: None)
    if options.trt:
        require_tensorrt()  # fail before minutes of export work
    emit(Stage("loading parity inputs", loading=True))
    parity = parity_inputs(source, options.parity_data, options.data_dir,
                           options.parity_samples)
    plan = ArtifactPlan.for_runtimes(options.runtimes, options.precisions,
                                     write_onnx=options.onnx, build_engines=options.trt)
    calibration = None
    if any(precision_row(p).needs_calibration for p in plan.graphs):
        # real images or a refusal, before the first file is written
        calibration = calibration_for(
            source, calibration_source(options.calib_data, parity), options.calib_images,
            options.calib_method, options.data_dir, options.settings.dynamic_batch)
    out = Path(options.out_dir)
    with open_output(out, "export folder", _is_export) as work:
        prepared = prepare_artifacts(source, work, plan, options.settings,
                                     onnx_metadata(source, options.settings.dynamic_batch),
                                     lambda: calibration, emit)
        prepared.publish(work, out)
        report = _check(source, options, prepared, parity, emit)
        write_json(work / "report.json", report.to_dict())
    return report


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier `nasctl export` (its report says so)."""
    import json

    try:
        doc = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"model", "artifacts", "runtimes", "onnx"} <= doc.keys()


def _check(source: ModelSource, options: ExportOptions, prepared: Prepared,
           parity: ParityInputs, emit: OnDeployEvent) -> ExportReport:
    """Parity and latency of every row, counts, the compute floor: the report."""
    from nasctl.deploy.bench import host_info

    images, labels = parity.images, parity.labels
    reference = _run_chunks(_torch_reference(prepared.artifacts, options), images,
                            _chunk(options))
    rows = []
    for name, precision in plan_rows(options.runtimes, options.precisions):
        emit(Stage(f"runtime {name} {precision}"))
        rows.append(_check_runtime(name, precision, options, prepared, images, labels,
                                   reference, parity.data.accuracy_judged))
    emit(Stage("counting"))
    validation = _validation(source, prepared.artifacts)
    floor = _compute_floor(validation, rows, options)
    export_record = prepared.record("onnx", "fp32")
    onnx_info = (OnnxInfo("skipped") if export_record is None else
                 OnnxInfo(export_record.status, export_record.error, prepared.onnx_export))
    notes = [] if source.trained else [RANDOM_WEIGHTS_NOTE]
    if parity.stand_in:
        notes.append(f"accuracy not measured: {parity.data.accuracy_not_measured}")
    report = ExportReport(
        model=source.describe(), options=options, host=host_info(options.threads),
        onnx=onnx_info, artifacts=prepared.records, runtimes=rows, validation=validation,
        compute_floor=floor, parity_data=parity.data, notes=notes, passed=False,
    )
    report.passed = _passed(report)
    return report


def _chunk(options: ExportOptions) -> int:
    """Parity batch size: a static-batch graph takes exactly one image."""
    return 16 if options.settings.dynamic_batch else 1


def _torch_reference(artifacts: Artifacts, options: ExportOptions) -> Runtime:
    runtime = make_runtime("torch", "fp32", options.threads)
    runtime.load(artifacts)
    return runtime


def _run_chunks(runtime: Runtime, images: np.ndarray, chunk: int) -> np.ndarray:
    import numpy as np

    return np.concatenate([runtime.run(images[i:i + chunk])
                           for i in range(0, len(images), chunk)])


def _check_runtime(name: str, precision: str, options: ExportOptions, prepared: Prepared,
                   images: np.ndarray, labels: np.ndarray | None, reference: np.ndarray,
                   judge_accuracy: bool) -> RuntimeRow:
    from nasctl.deploy.bench import error_line, measure, open_runtime
    from nasctl.deploy.parity import compare_outputs, tolerance_for

    exported = _exported(name, precision, prepared)
    opened = open_runtime(name, precision, options.threads, prepared.artifacts,
                          exported.status, exported.reason)
    runtime = opened.runtime
    row = RuntimeRow(name, precision, runtime.device, exported,
                     ParityCheck("unavailable"), LatencyCheck("unavailable"),
                     runtime.settings())
    if opened.status == "failed":  # a runtime failing to load a file we made is a failure
        row.parity = ParityCheck("failed", error=opened.detail)
        row.latency = LatencyCheck("failed", error=opened.detail)
        return row
    if opened.status == "unavailable":
        row.parity = ParityCheck("unavailable", reason=opened.detail)
        row.latency = LatencyCheck("unavailable", reason=opened.detail)
        return row
    try:
        # the torch row is the reference itself: its outputs are already computed
        outputs = reference if name == "torch" else _run_chunks(runtime, images,
                                                                _chunk(options))
        tolerance = tolerance_for(precision, options.atol, options.rtol, options.min_top1)
        result = compare_outputs(reference, outputs, tolerance, precision, labels,
                                 judge_accuracy)
        status = "reference" if name == "torch" else ("pass" if result.passed else "failed")
        row.parity = ParityCheck(status, result=result)
    except Exception as exc:  # a runtime crashing on real inputs is a failed check, not a crash
        row.parity = ParityCheck("failed", error=error_line(exc))
    try:
        batch = images[: options.latency_batch]
        if len(batch) < options.latency_batch:
            batch = images[:1].repeat(options.latency_batch, axis=0)
        stats = measure(runtime, batch, warmup=options.warmup, runs=options.latency_runs)
        row.latency = LatencyCheck("pass", stats=stats)
    except Exception as exc:
        row.latency = LatencyCheck("failed", error=error_line(exc))
    return row


def _exported(name: str, precision: str, prepared: Prepared) -> ExportedCheck:
    consumes = RUNTIMES[name].consumes
    if consumes == "network":
        return ExportedCheck("reference")
    record = prepared.record(consumes, precision)
    if record is None:
        what = "no --trt" if consumes == "engine" else "not requested"
        return ExportedCheck("unavailable", reason=f"not exported ({what})")
    if record.status == "failed":
        return ExportedCheck("failed", error=record.error)
    return ExportedCheck("pass", path=record.path)


def _validation(source: ModelSource, artifacts: Artifacts) -> CountValidation:
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
    counts = TorchCounts(params=params.without_aux, params_aux_head=aux,
                         macs_convfc=macs.convfc, macs_all=macs.all)
    onnx_counts = count_onnx(artifacts.onnx["fp32"]) if "fp32" in artifacts.onnx else None
    agreement = [] if onnx_counts is None else [
        CountAgreement("macs_convfc", macs.convfc, onnx_counts.macs_convfc),
        CountAgreement("params (BN unfolded)", macs.params_used, onnx_counts.params_unfolded),
    ]
    return CountValidation(counts, onnx_counts, agreement,
                           _paper(source, counts, onnx_counts))


def _paper(source: ModelSource, counts: TorchCounts,
           onnx_counts: OnnxCounts | None) -> PaperComparison:
    from nasctl.deploy.validation import find_card, validate_counts
    from nasctl.nets import dataset_settings

    card = find_card(source.genotype)
    if card is None:
        return PaperComparison("no-reference", note="no paper card for this genotype")
    standard = dataset_settings(source.dataset)
    if source.dataset not in ("cifar10", "cifar100", "imagenet") or (
            source.channels, source.layers, source.num_classes) != (
            standard.channels, standard.layers, standard.num_classes):
        return PaperComparison(
            "not-comparable", card=card.name,
            note=f"built with dataset={source.dataset}, C={source.channels}, "
                 f"{source.layers} cells; the card's figures are for the papers' "
                 "CIFAR (C=36, 20 cells) and ImageNet (C=48, 14 cells) networks")
    name = source.genotype.name or card.name
    aux = counts.params_aux_head
    torch_row = validate_counts(name, source.dataset, counts.params, counts.params + aux,
                                counts.macs_convfc, counts.macs_all, card)
    onnx_row = None
    if onnx_counts is not None:
        unfolded = onnx_counts.params_unfolded
        onnx_row = validate_counts(name, source.dataset, unfolded, unfolded + aux,
                                   onnx_counts.macs_convfc, counts.macs_all, card)
    statuses = [row.status for row in (torch_row, onnx_row) if row is not None]
    worst = next((s for s in ("fail", "explained", "pass") if s in statuses), "no-reference")
    return PaperComparison(worst, card=card.name, torch=torch_row, onnx=onnx_row)


def _compute_floor(validation: CountValidation, rows: list[RuntimeRow],
                   options: ExportOptions) -> ComputeFloor:
    """Batch-1 CPU floor: conv+FC MACs over this CPU's measured peak fp32 multiply-add
    rate; each CPU latency row gets its distance from it."""
    from nasctl.deploy.bench import peak_macs_per_second

    peak = peak_macs_per_second(threads=options.threads, seconds=0.5)
    macs = validation.torch.macs_convfc * options.latency_batch
    floor_ms = macs / peak * 1000.0
    for row in rows:
        if row.device == "cpu" and row.latency.stats is not None:
            row.latency.x_floor = round(row.latency.stats.median_ms / floor_ms, 2)
    return ComputeFloor(peak_macs_per_s=round(peak), threads=options.threads, macs=macs,
                        floor_ms=float(f"{floor_ms:.4g}"))


def _passed(report: ExportReport) -> bool:
    """Every file made, no row failed, at least one row besides the reference measured,
    counts agree and the paper card does not fail."""
    if any(a.status == "failed" for a in report.artifacts):
        return False
    if any(row.failed for row in report.runtimes):
        return False
    if not any(row.parity.status == "pass" for row in report.runtimes):
        return False
    return report.validation.passed
