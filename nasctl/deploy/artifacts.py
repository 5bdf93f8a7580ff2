"""The files a set of runtimes needs, made once for `nasctl export` and `nasctl bench`: the
fp32 ONNX graph, each requested precision's graph, and a TensorRT engine per precision;
or, for `nasctl bench` of a given .onnx/.engine file, that file as it is, with its input
contract read from nasctl's metadata under a strict schema.

What is made follows from the runtimes' declarations (``Runtime.consumes`` and
``Runtime.precisions``), never from a list of runtime names. A file that cannot be made is
a ``failed`` record with the reason; the runtimes that needed it then report that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasctl.deploy.events import OnDeployEvent, Stage
from nasctl.deploy.runtime import Artifacts, Consumes
from nasctl.deploy.runtimes import RUNTIMES
from nasctl.errors import NasctlError
from nasctl.export.precision import PRECISIONS, graph_name, precision_row

if TYPE_CHECKING:
    from nasctl.export.onnx_export import OnnxExport
    from nasctl.export.precision import Calibration
    from nasctl.export.source import ModelSource

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

    def publish(self, work: Path, final: Path) -> None:
        """Record paths as they will be once the folder ``work`` is renamed to ``final``;
        the runtimes go on loading the files from ``work`` until then."""
        def moved(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(str(work)):
                return str(final) + value[len(str(work)):]
            if isinstance(value, dict):
                return {k: moved(v) for k, v in value.items()}
            if isinstance(value, list):
                return [moved(v) for v in value]
            return value

        for record in self.records:
            record.path, record.details = moved(record.path), moved(record.details)
        if self.onnx_export is not None:
            self.onnx_export = replace(self.onnx_export, path=moved(self.onnx_export.path))


def prepare_artifacts(source: ModelSource, out_dir: Path, plan: ArtifactPlan,
                      settings: ExportSettings, metadata: dict[str, str],
                      calibration: Callable[[], Calibration | None] | None = None,
                      on_event: OnDeployEvent | None = None) -> Prepared:
    """Make the files of ``plan`` under ``out_dir``. ``calibration`` is called only when an
    int8 graph is made (it loads real images)."""
    from nasctl.export.onnx_export import export_onnx

    emit = on_event or (lambda event: None)
    prepared = Prepared(Artifacts(net=source.net, cache_dir=str(out_dir / "ort_trt_cache")),
                        [])
    if not plan.graphs:
        return prepared
    fp32 = out_dir / graph_name("fp32")
    emit(Stage("export onnx"))
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
                     calibration: Callable[[], Calibration | None] | None,
                     emit: OnDeployEvent) -> ArtifactRecord:
    from nasctl.export.precision import make_precision_graph

    emit(Stage(f"{precision} graph"))
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
            emit: OnDeployEvent) -> ArtifactRecord:
    from nasctl.export.tensorrt import EngineSettings, build_engine

    graph = prepared.artifacts.onnx.get(precision)
    if graph is None:
        return ArtifactRecord("engine", precision, "failed",
                              error=f"no {precision} ONNX graph to build from")
    emit(Stage(f"TensorRT engine ({precision})"))
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


def onnx_metadata(source: ModelSource, dynamic_batch: bool) -> dict[str, str]:
    """What a deployed file needs to know about its model, stored in the ONNX graph."""
    from nasctl import __version__

    return {
        "nasctl.version": __version__,
        "nasctl.genotype": source.genotype.name or "",
        "nasctl.genotype_sha256": source.genotype.content_hash(),
        "nasctl.dataset": source.dataset,
        "nasctl.input_shape": ",".join(map(str, ["N" if dynamic_batch else 1,
                                                 *source.input_shape])),
        "nasctl.mean": ",".join(f"{v:.8g}" for v in source.mean),
        "nasctl.std": ",".join(f"{v:.8g}" for v in source.std),
        "nasctl.weights": "trained" if source.trained else "random",
    }


# -- bench: a model to export, or a given file ------------------------------------------

MAX_INPUT_SIZE = 1024  # pixels a side: ImageNet is 224, CIFAR 32


@dataclass
class BenchInputs:
    """What `nasctl bench` runs: the files, the input contract, what it holds."""

    artifacts: Artifacts
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    precisions: tuple[str, ...]
    described: dict[str, Any]  # the model's description, or the file's spec and kind
    given_file: bool  # a user's .onnx/.engine: a runtime that cannot load it is bad input


def bench_inputs(model: str, runtimes: tuple[str, ...], batches: list[int],
                 precisions: tuple[str, ...], tmp: Path, *, dataset: str | None,
                 channels: int | None, layers: int | None, calib_data: str,
                 calib_images: int | None, data_dir: str | None,
                 on_event: OnDeployEvent | None = None) -> BenchInputs:
    """A given file as it is (at the precision it holds); a model source exported through
    the same preparation as `nasctl export` (dynamic batch when batch sizes vary), with
    engines where TensorRT is present."""
    from nasctl.data import dataset_info
    from nasctl.deploy.export_inputs import calibration_for
    from nasctl.export.source import load_model_source
    from nasctl.export.tensorrt import tensorrt_unavailable_reason

    suffix = Path(model).suffix
    if suffix in (".onnx", ".engine"):
        if not Path(model).is_file():
            raise NasctlError(f"{model}: no such file")
        info = dataset_info(dataset or "cifar10")
        contract = file_contract(model, (info.input_size, info.mean, info.std), batches)
        other = [p for p in precisions if p != contract.precision]
        if other and precisions != ("fp32",):  # fp32 is the default, not a request
            raise NasctlError(f"{model} holds an {contract.precision} graph and runs at that "
                              f"precision, not {', '.join(other)}; bench the model itself, "
                              f"or its {other[0]} file")
        artifacts = Artifacts(cache_dir=str(tmp / "ort_trt_cache"))
        (artifacts.onnx if suffix == ".onnx" else artifacts.engines)[contract.precision] = model
        return BenchInputs(artifacts, contract.input_size, contract.mean, contract.std,
                           (contract.precision,), {"spec": model, "kind": suffix[1:]}, True)
    source = load_model_source(model, dataset=dataset, channels=channels, layers=layers)
    dynamic = any(b != 1 for b in batches)
    plan = ArtifactPlan.for_runtimes(runtimes, precisions, write_onnx=False,
                                     build_engines=tensorrt_unavailable_reason() is None)
    settings = ExportSettings(dynamic_batch=dynamic, max_batch=max(batches),
                              opt_batch=max(batches))
    prepared = prepare_artifacts(
        source, tmp, plan, settings, onnx_metadata(source, dynamic),
        lambda: calibration_for(source, calib_data, calib_images, "minmax", data_dir, dynamic),
        on_event)
    failed = [r for r in prepared.records if r.status == "failed"]
    if failed:
        raise NasctlError(f"could not make the {failed[0].precision} {failed[0].kind} file: "
                          f"{failed[0].error}")
    return BenchInputs(prepared.artifacts, source.input_size, source.mean, source.std,
                       precisions, source.describe().to_dict(), False)


@dataclass(frozen=True)
class FileContract:
    """What running a given file needs: input size, normalization, the precision held."""

    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    precision: str


def file_contract(path: str, default: tuple[int, tuple[float, ...], tuple[float, ...]],
                  batches: list[int]) -> FileContract:
    """From nasctl's ONNX metadata when present (checked strictly: a malformed entry is a
    one-line refusal naming it), else ``default`` (the dataset's); an engine's precision
    from its sidecar."""
    import json

    size, mean, std = default
    if path.endswith(".engine"):
        sidecar = Path(f"{path}.json")
        held = "fp32"
        if sidecar.is_file():
            try:
                held = json.loads(sidecar.read_text())["settings"]["precision"]
            except (ValueError, KeyError, TypeError):
                raise NasctlError(f"{sidecar}: not a nasctl engine sidecar") from None
            if held not in PRECISIONS:
                raise NasctlError(f"{sidecar}: unknown precision {held!r}")
        return FileContract(size, mean, std, held)
    from nasctl.export.onnx_export import describe_onnx_file

    described = describe_onnx_file(path)
    if described.static_batch is not None and any(b != described.static_batch
                                                  for b in batches):
        raise NasctlError(f"{path} has a static batch of {described.static_batch}; export "
                          "with --dynamic-batch to bench other batch sizes")
    meta = described.metadata
    if any(key in meta for key in _CONTRACT_KEYS):
        size = _input_size(path, meta)
        mean = _channel_values(path, meta, "nasctl.mean", positive=False)
        std = _channel_values(path, meta, "nasctl.std", positive=True)
    return FileContract(size, mean, std, described.precision)


_CONTRACT_KEYS = ("nasctl.input_shape", "nasctl.mean", "nasctl.std")


def _entry(path: str, meta: dict[str, str], key: str) -> list[str]:
    if key not in meta:
        present = ", ".join(k for k in _CONTRACT_KEYS if k in meta)
        raise NasctlError(f"{path}: ONNX metadata has {present} but no {key}")
    return [part.strip() for part in meta[key].split(",")]


def _input_size(path: str, meta: dict[str, str]) -> int:
    """``N,3,S,S`` or ``1,3,S,S`` with 1 <= S <= MAX_INPUT_SIZE."""
    parts = _entry(path, meta, "nasctl.input_shape")
    bad = f"{path}: ONNX metadata nasctl.input_shape {meta['nasctl.input_shape']!r} is not"
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]) or \
            not (parts[0] == "N" or parts[0].isdigit()):
        raise NasctlError(f"{bad} BATCH,3,SIZE,SIZE")
    channels, height, width = (int(p) for p in parts[1:])
    if channels != 3 or height != width or not 1 <= height <= MAX_INPUT_SIZE:
        raise NasctlError(f"{bad} 3 channels of a square image of 1 to {MAX_INPUT_SIZE} pixels")
    return height


def _channel_values(path: str, meta: dict[str, str], key: str,
                    positive: bool) -> tuple[float, ...]:
    """Three finite numbers (positive ones for a std)."""
    import math

    parts = _entry(path, meta, key)
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and (v > 0 or not positive)
                                   for v in values):
        what = "positive numbers" if positive else "finite numbers"
        raise NasctlError(f"{path}: ONNX metadata {key} {meta[key]!r} is not 3 {what}")
    return values
