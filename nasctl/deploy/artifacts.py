"""The files a set of runtimes needs, made once for `nasctl export` and `nasctl bench`: the
fp32 ONNX graph, each requested precision's graph, and a TensorRT engine per precision.

What is made follows from the runtimes' declarations (``Runtime.consumes`` and
``Runtime.precisions``), never from a list of runtime names. A file that cannot be made is
a ``failed`` record with the reason; the runtimes that needed it then report that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasctl.deploy.runtime import Artifacts, Consumes
from nasctl.deploy.runtimes import RUNTIMES
from nasctl.errors import NasctlError
from nasctl.export.precision import graph_name, precision_row

if TYPE_CHECKING:
    from nasctl.export.onnx_export import OnnxExport
    from nasctl.export.precision import Calibration
    from nasctl.export.source import ModelSource

Event = Callable[[dict[str, Any]], None]
Status = Literal["pass", "failed", "skipped"]


@dataclass
class ArtifactRecord:
    """One file: an ONNX graph or an engine of one precision."""

    kind: Literal["onnx", "engine"]
    precision: str
    status: Status
    path: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactPlan:
    """What to make: ``graphs`` are the ONNX precisions, ``engines`` the engine ones."""

    graphs: tuple[str, ...]
    engines: tuple[str, ...]

    @classmethod
    def for_runtimes(cls, runtimes: tuple[str, ...], precisions: tuple[str, ...], *,
                     write_onnx: bool, build_engines: bool) -> ArtifactPlan:
        """``write_onnx``: every requested precision's graph even if no runtime runs it
        (export); ``build_engines``: engines for the precisions an engine runtime runs."""
        def wanted(kind: Consumes) -> set[str]:
            return {p for name in runtimes for p in precisions
                    if RUNTIMES[name].consumes == kind and p in RUNTIMES[name].precisions}

        engines = wanted("engine") if build_engines else set()
        graphs = set(precisions) if write_onnx else wanted("onnx")
        graphs |= engines  # an engine is built from its precision's graph
        if graphs:
            graphs.add("fp32")  # every other graph is made from the fp32 one
        order = ("fp32", *precisions)
        return cls(graphs=tuple(p for p in dict.fromkeys(order) if p in graphs),
                   engines=tuple(p for p in precisions if p in engines))


@dataclass
class ExportSettings:
    """How the files are made (the ONNX export and the engine builder's settings)."""

    opset: int = 18
    dynamic_batch: bool = False
    exporter: str = "auto"
    simplify: bool = True
    workspace_mib: int = 4096
    max_batch: int = 32
    opt_batch: int = 1
    tf32: bool = False


@dataclass
class Prepared:
    artifacts: Artifacts
    records: list[ArtifactRecord]
    onnx_export: OnnxExport | None = None

    def record(self, kind: str, precision: str) -> ArtifactRecord | None:
        return next((r for r in self.records if r.kind == kind and r.precision == precision),
                    None)


def prepare_artifacts(source: ModelSource, out_dir: Path, plan: ArtifactPlan,
                      settings: ExportSettings, metadata: dict[str, str],
                      calibration: Callable[[], Calibration] | None = None,
                      on_event: Event | None = None) -> Prepared:
    """Make the files of ``plan`` under ``out_dir``. ``calibration`` is called only when an
    int8 graph is made (it loads real images)."""
    from nasctl.export.onnx_export import export_onnx

    emit = on_event or (lambda event: None)
    prepared = Prepared(Artifacts(net=source.net, cache_dir=str(out_dir / "ort_trt_cache")),
                        [])
    if not plan.graphs:
        return prepared
    fp32 = out_dir / graph_name("fp32")
    emit({"event": "stage", "stage": "export onnx"})
    try:
        exported = export_onnx(source.net, fp32, source.input_shape, opset=settings.opset,
                               dynamic_batch=settings.dynamic_batch, metadata=metadata,
                               exporter=settings.exporter,  # type: ignore[arg-type]
                               simplify=settings.simplify)
    except NasctlError as exc:
        prepared.records += [ArtifactRecord("onnx", p, "failed", error=str(exc))
                             for p in plan.graphs]
        return prepared
    prepared.onnx_export = exported
    prepared.artifacts.onnx["fp32"] = exported.path
    prepared.records.append(ArtifactRecord("onnx", "fp32", "pass", path=exported.path))
    for precision in plan.graphs:
        if precision != "fp32":
            prepared.records.append(_precision_graph(prepared, precision, out_dir,
                                                     calibration, emit))
    for precision in plan.engines:
        prepared.records.append(_engine(prepared, precision, out_dir, settings, emit))
    return prepared


def _precision_graph(prepared: Prepared, precision: str, out_dir: Path,
                     calibration: Callable[[], Calibration] | None,
                     emit: Event) -> ArtifactRecord:
    from nasctl.export.precision import make_precision_graph

    emit({"event": "stage", "stage": f"{precision} graph"})
    try:
        calib = (calibration() if precision_row(precision).needs_calibration
                 and calibration is not None else None)
        graph = make_precision_graph(prepared.artifacts.onnx["fp32"], precision,
                                     out_dir / graph_name(precision), calib)
    except NasctlError as exc:
        return ArtifactRecord("onnx", precision, "failed", error=str(exc))
    prepared.artifacts.onnx[precision] = graph.path
    return ArtifactRecord("onnx", precision, "pass", path=graph.path, details=graph.to_dict())


def _engine(prepared: Prepared, precision: str, out_dir: Path, settings: ExportSettings,
            emit: Event) -> ArtifactRecord:
    from nasctl.export.tensorrt import EngineSettings, build_engine

    graph = prepared.artifacts.onnx.get(precision)
    if graph is None:
        return ArtifactRecord("engine", precision, "failed",
                              error=f"no {precision} ONNX graph to build from")
    emit({"event": "stage", "stage": f"TensorRT engine ({precision})"})
    try:
        engine_settings = EngineSettings(
            precision=precision, workspace_mib=settings.workspace_mib,
            max_batch=settings.max_batch, opt_batch=min(settings.opt_batch, settings.max_batch),
            timing_cache=str(out_dir / "timing.cache"), tf32=settings.tf32)
        build = build_engine(graph, out_dir / precision_row(precision).engine_name(),
                             engine_settings, emit)
    except NasctlError as exc:
        return ArtifactRecord("engine", precision, "failed", error=str(exc))
    prepared.artifacts.engines[precision] = build.engine_path
    return ArtifactRecord("engine", precision, "pass", path=build.engine_path,
                          details=build.to_dict())
