"""Latency measurement in the trtexec/Polygraphy style: warm-up, then many timed runs;
median, p90, p99 and throughput. GPU runtimes that only enqueue work are timed with CUDA
events on the current stream (synchronised per run); the others with a host clock."""

from __future__ import annotations

import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from nasctl.deploy.events import DeployEvent, Timing

if TYPE_CHECKING:
    from nasctl.deploy.runtime import Artifacts, Runtime


@dataclass
class Latency:
    batch: int
    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput: float  # images per second at the median
    timer: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(runtime: Runtime, inputs: np.ndarray, warmup: int = 10, runs: int = 100,
            min_seconds: float = 0.0, max_seconds: float = 60.0) -> Latency:
    """Time ``runtime`` on ``inputs`` (one batch). At least ``runs`` timed runs (and at least
    ``min_seconds`` of them), stopping early after ``max_seconds`` with at least 5 runs."""
    infer = runtime.staged(inputs)
    cuda_events = runtime.async_cuda
    for _ in range(warmup):
        infer()
    _sync(runtime)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        times.append(_time_cuda(infer) if cuda_events else _time_host(infer, runtime))
        elapsed = time.perf_counter() - start
        enough = len(times) >= runs and elapsed >= min_seconds
        if enough or (elapsed >= max_seconds and len(times) >= 5):
            break
    ms = np.asarray(times)
    batch = int(inputs.shape[0])
    median = float(np.median(ms))
    return Latency(
        batch=batch, runs=len(times), warmup=warmup, median_ms=round(median, 4),
        p90_ms=round(float(np.percentile(ms, 90)), 4),
        p99_ms=round(float(np.percentile(ms, 99)), 4),
        mean_ms=round(float(ms.mean()), 4), min_ms=round(float(ms.min()), 4),
        throughput=round(batch * 1000.0 / median, 2) if median > 0 else 0.0,
        timer="cuda-events" if cuda_events else "host-clock",
    )


@dataclass
class BenchRow:
    """One (runtime, precision, batch) measurement, or why there is none."""

    runtime: str
    precision: str
    device: str
    status: str  # pass, failed, unavailable
    batch: int | None = None
    stats: Latency | None = None
    reason: str | None = None
    error: str | None = None
    settings: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "stats" and v is not None}
        if self.stats is not None:
            doc.update(self.stats.to_dict())
        return doc


@dataclass
class OpenedRuntime:
    """A (runtime, precision) row before it runs: ``ready`` (loaded), ``unavailable`` here
    (``detail`` says why) or ``failed`` (``detail`` is the error)."""

    runtime: Runtime
    status: Literal["ready", "unavailable", "failed"]
    detail: str | None = None


def open_runtime(name: str, precision: str, threads: int | None, artifacts: Artifacts,
                 file_status: str = "pass", file_reason: str | None = None) -> OpenedRuntime:
    """The one judgement of a row before it runs, for export and bench alike: the runtime
    cannot run here, or its file was not made (``file_status`` ``unavailable``, with
    ``file_reason``) -> unavailable; its file failed to be made, or loading it raised ->
    failed; else ready."""
    from nasctl.deploy.runtimes import make_runtime

    runtime = make_runtime(name, precision, threads)
    reason = runtime.unavailable_reason()
    if reason is None and file_status == "failed":
        return OpenedRuntime(runtime, "failed", f"no {precision} file to run")
    if reason is None and file_status == "unavailable":
        reason = file_reason
    try:
        reason = reason or runtime.try_load(artifacts)
    except Exception as exc:  # e.g. a corrupt file: this row failed, the rest go on
        return OpenedRuntime(runtime, "failed", error_line(exc))
    if reason is not None:
        return OpenedRuntime(runtime, "unavailable", reason)
    return OpenedRuntime(runtime, "ready")


def error_line(exc: BaseException) -> str:
    """An unexpected runtime error as one line: type, first line, where it was raised."""
    text = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    loc = f" at {os.path.basename(where[0].filename)}:{where[0].lineno}" if where else ""
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}{loc}"


def bench_runtimes(artifacts: Artifacts, pairs: list[tuple[str, str]], batches: list[int],
                   images: np.ndarray, threads: int | None = None, warmup: int = 10,
                   runs: int = 100, on_event: Callable[[DeployEvent], None] | None = None,
                   ) -> list[BenchRow]:
    """Latency of each (runtime, precision) at each batch size; unavailable runtimes become
    rows with a reason, never errors."""
    emit = on_event or (lambda event: None)
    rows: list[BenchRow] = []
    for name, precision in pairs:
        opened = open_runtime(name, precision, threads, artifacts)
        runtime = opened.runtime
        if opened.status == "unavailable":
            rows.append(_row(runtime, "unavailable", reason=opened.detail))
            continue
        if opened.status == "failed":
            rows.append(_row(runtime, "failed", error=opened.detail))
            continue
        for batch in batches:
            emit(Timing(name, precision, batch))
            x = images[np.arange(batch) % len(images)]
            try:
                stats = measure(runtime, x, warmup=warmup, runs=runs)
                rows.append(_row(runtime, "pass", batch=batch, stats=stats))
            except Exception as exc:  # e.g. a batch outside an engine's profile
                rows.append(_row(runtime, "failed", batch=batch, error=error_line(exc)))
    return rows


def _row(runtime: Runtime, status: str, **result: Any) -> BenchRow:
    return BenchRow(runtime.name, runtime.precision, runtime.device, status,
                    settings=runtime.settings() or None, **result)


def _sync(runtime: Runtime) -> None:
    if runtime.device == "cuda":
        import torch

        torch.cuda.synchronize()


def _time_host(infer: Callable[[], Any], runtime: Runtime) -> float:
    t0 = time.perf_counter()
    infer()
    _sync(runtime)
    return (time.perf_counter() - t0) * 1000.0


def _time_cuda(infer: Callable[[], Any]) -> float:
    import torch

    begin = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    stream = torch.cuda.current_stream()
    begin.record(stream)
    infer()
    end.record(stream)
    end.synchronize()
    return float(begin.elapsed_time(end))


def peak_macs_per_second(threads: int | None = None, size: int = 1024,
                         seconds: float = 1.0) -> float:
    """Measured fp32 multiply-add rate of this CPU: the best of repeated square matmuls
    (the compute floor for a model is its MACs over this rate)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        for _ in range(2):
            a @ b
        best = float("inf")
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return size**3 / best


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_gib: float
    capability: str
    cuda: str | None
    cudnn: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostInfo:
    """The host a latency was measured on: CPU, GPU, library versions, thread settings."""

    cpu: str
    logical_cpus: int | None
    platform: str
    python: str
    threads: dict[str, Any]  # requested, torch, torch_interop, OMP_NUM_THREADS
    versions: dict[str, str | None]  # library -> version (None: not installed)
    gpu: GpuInfo | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpu": self.gpu.to_dict() if self.gpu else None}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HostInfo:
        gpu = doc.get("gpu")
        return cls(doc["cpu"], doc.get("logical_cpus"), doc["platform"], doc["python"],
                   dict(doc["threads"]), dict(doc["versions"]),
                   None if gpu is None else GpuInfo(**gpu))


def host_info(threads: int | None = None) -> HostInfo:
    """Host CPU/GPU, library versions and thread settings, for every latency report."""
    import numpy
    import torch

    from nasctl import __version__
    from nasctl.export.tensorrt import tensorrt_unavailable_reason

    versions: dict[str, str | None] = {"torch": torch.__version__, "numpy": numpy.__version__}
    for lib in ("onnx", "onnxruntime"):
        try:
            versions[lib] = __import__(lib).__version__
        except ImportError:
            versions[lib] = None
    versions["nasctl"] = __version__
    versions["tensorrt"] = None
    if tensorrt_unavailable_reason() is None:
        import tensorrt

        versions["tensorrt"] = tensorrt.__version__
    gpu = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = GpuInfo(props.name, round(props.total_memory / 2**30, 1),
                      f"{props.major}.{props.minor}", torch.version.cuda,
                      torch.backends.cudnn.version())
    return HostInfo(
        cpu=_cpu_name(), logical_cpus=os.cpu_count(), platform=platform.platform(),
        python=platform.python_version(),
        threads={"requested": threads, "torch": torch.get_num_threads(),
                 "torch_interop": torch.get_num_interop_threads(),
                 "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        versions=versions, gpu=gpu)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
