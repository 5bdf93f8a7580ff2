"""Timing units and whole networks on a runtime, through the exporter and session options
of `nasctl export`, so that the units add up to the whole network (docs/latency.md).

A unit is timed as the slope between two graphs holding it ``n1`` and ``n2`` times: the
per-run cost of a session (input binding, output allocation, the first reorder into the
blocked layout) cancels. Shape-keeping units are chained (each copy reads the previous
one's output, as layers of a network do); the others run as copies reading one input,
summed, as a DARTS node reads one tensor and sums its ops (ONNX Runtime then shares the
copies' leading ReLUs and folds the sums into the convolutions, as in the network).
Parameter-free units other than chained pools (shared ReLUs, standalone sums, concats,
strided pools) cannot be isolated this way, since ONNX Runtime merges identical copies;
their costs are fitted from whole networks (:mod:`nasctl.latency.fit`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from nasctl.errors import BackendUnavailable, NasctlError
from nasctl.nets.ops import Zero

if TYPE_CHECKING:
    from nasctl.deploy.runtime import Runtime
    from nasctl.nets.units import Unit

Harness = Literal["chain", "shared"]
# parameter-free modules that chain without being merged (pools, DARTS's zero op)
_CHAINED_FREE = (nn.MaxPool2d, nn.AvgPool2d, Zero)
TABLE_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class MeasureSettings:
    """How units and networks are timed (recorded in the table)."""

    runtime: str = "ort"
    precision: str = "fp32"
    threads: int | None = 1
    batch: int = 1
    opset: int = 18
    copies: tuple[int, int] = (1, 5)
    rounds: int = 7
    runs: int = 20
    warmup: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Median and spread (ms) over rounds; ``runs`` timed runs in all."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timing(values: list[float], runs: int) -> Timing:
    a = np.asarray(values)
    return Timing(round(float(np.median(a)), 5), round(float(np.percentile(a, 10)), 5),
                  round(float(np.percentile(a, 90)), 5), runs)


def harness_of(unit: Unit) -> Harness | None:
    """How ``unit`` is timed by slope, or None when it must be fitted (parameter-free and
    not chainable, or a bare ReLU, which ONNX Runtime drops when chained)."""
    module = unit.build()
    has_params = any(True for _ in module.parameters())
    chainable = len(unit.input_shapes) == 1 and _keeps_shape(module, unit.input_shapes[0])
    if chainable and (has_params or isinstance(module, _CHAINED_FREE)):
        return "chain"
    return "shared" if has_params else None


def _keeps_shape(module: nn.Module, shape: tuple[int, ...]) -> bool:
    with torch.device("meta"):
        meta = _meta_copy(module)
        out = meta(torch.zeros(1, *shape))
    return isinstance(out, torch.Tensor) and tuple(out.shape[1:]) == tuple(shape)


def _meta_copy(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).to("meta")


class _Chain(nn.Module):
    def __init__(self, build: Callable[[], nn.Module], n: int) -> None:
        super().__init__()
        self.copies = nn.Sequential(*(build() for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.copies(x)


class _Shared(nn.Module):
    def __init__(self, build: Callable[[], nn.Module], n: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(build() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.copies[0](x)
        for copy in self.copies[1:]:
            total = total + copy(x)
        return total


def harness(unit: Unit, kind: Harness, n: int) -> nn.Module:
    """The graph holding ``unit`` ``n`` times, with random trained-looking BatchNorms
    (fresh ones are identities, which exporters may fold away)."""
    torch.manual_seed(n)
    net = (_Chain if kind == "chain" else _Shared)(unit.build, n)
    randomize_batchnorm(net)
    return net.eval()


def randomize_batchnorm(net: nn.Module) -> None:
    """Trained-looking BatchNorm statistics and affine parameters, in place."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)


def check_runtime(settings: MeasureSettings) -> Runtime:
    """The runtime to time on, or BackendUnavailable in one line."""
    from nasctl.deploy.runtimes import make_runtime

    if settings.precision not in TABLE_PRECISIONS:
        raise NasctlError(f"latency tables are measured at {', '.join(TABLE_PRECISIONS)}, "
                          f"not {settings.precision} (int8 needs calibrated Q/DQ graphs per "
                          f"unit, not done yet)")
    runtime = make_runtime(settings.runtime, settings.precision, settings.threads)
    reason = runtime.unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(f"{settings.runtime}: {reason}")
    if runtime.consumes != "onnx":
        raise BackendUnavailable(f"{settings.runtime}: latency tables time ONNX graphs; use "
                                 f"an ONNX Runtime provider (ort, ort-cuda, ort-trt)")
    return runtime


class Timer:
    """Exports graphs into a private folder and times them on the settings' runtime."""

    def __init__(self, settings: MeasureSettings) -> None:
        self.settings = settings
        check_runtime(settings)
        self._tmp = tempfile.TemporaryDirectory(prefix="nasctl-latency-")
        self._count = 0
        self._reference: tuple[Reference, Runtime] | None = None

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> Timer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, net: nn.Module, input_shape: tuple[int, ...]) -> Runtime:
        """Export ``net`` as `nasctl export` does and load it on a fresh runtime."""
        from nasctl.deploy.runtime import Artifacts
        from nasctl.deploy.runtimes import make_runtime
        from nasctl.export.onnx_export import export_onnx
        from nasctl.export.precision import make_precision_graph

        s = self.settings
        self._count += 1
        path = Path(self._tmp.name) / f"g{self._count}.onnx"
        export_onnx(net, path, (input_shape[0], input_shape[1], input_shape[2]),
                    opset=s.opset, dynamic_batch=s.batch > 1)
        if s.precision != "fp32":
            graph = path.with_suffix(f".{s.precision}.onnx")
            make_precision_graph(path, s.precision, graph)
            path = graph
        runtime = make_runtime(s.runtime, s.precision, s.threads)
        reason = runtime.try_load(Artifacts(onnx={s.precision: str(path)},
                                            cache_dir=str(Path(self._tmp.name) / "trt")))
        if reason is not None:
            raise BackendUnavailable(f"{s.runtime}: {reason}")
        return runtime

    def _inputs(self, shape: tuple[int, ...]) -> np.ndarray:
        rng = np.random.default_rng(0)
        return rng.standard_normal((self.settings.batch, *shape)).astype(np.float32)

    def _median_ms(self, runtime: Runtime, x: np.ndarray, warmup: int) -> float:
        """The median of ``runs`` timed runs, on the clock :func:`clock_of` picks."""
        from nasctl.deploy.bench import measure

        s = self.settings
        if clock_of(runtime, s.threads) != "thread-cpu":
            return measure(runtime, x, warmup=warmup, runs=s.runs).median_ms
        infer = runtime.staged(x)
        for _ in range(warmup):
            infer()
        times = []
        for _ in range(s.runs):
            start = time.thread_time_ns()
            infer()
            times.append((time.thread_time_ns() - start) / 1e6)
        return float(np.median(times))

    def _pair(self, unit: Unit, kind: Harness) -> tuple[Runtime, Runtime, np.ndarray]:
        """The graphs with ``copies`` of the unit, loaded, and their input."""
        n1, n2 = self.settings.copies
        shape = unit.input_shapes[0]
        return (self.load(harness(unit, kind, n1), shape),
                self.load(harness(unit, kind, n2), shape), self._inputs(shape))

    def _slope(self, pair: tuple[Runtime, Runtime, np.ndarray], warmup: int) -> float:
        first, second, x = pair
        n1, n2 = self.settings.copies
        t1 = self._median_ms(first, x, warmup)
        t2 = self._median_ms(second, x, warmup)
        return max(t2 - t1, 0.0) / (n2 - n1)

    def time_unit(self, unit: Unit, kind: Harness) -> Timing:
        """The unit's slope between the graphs with ``copies`` of it, per round (the two
        graphs alternate, so a busy spell of the host hits both)."""
        s = self.settings
        pair = self._pair(unit, kind)
        slopes = [self._slope(pair, s.warmup if r == 0 else 2) for r in range(s.rounds)]
        return _timing(slopes, 2 * s.rounds * s.runs)

    def time_network(self, net: nn.Module, input_shape: tuple[int, ...],
                     reference: Reference | None = None) -> NetworkTiming:
        """A whole network: the median of per-round medians. With a ``reference``, each
        round also times the reference network and scales the round by the host's speed
        relative to when the table was made (``host_speed`` > 1: the host is slower now)."""
        s = self.settings
        runtime = self.load(net, input_shape)
        x = self._inputs(input_shape)
        ref = None
        if reference is not None:
            if self._reference is None or self._reference[0] is not reference:
                self._reference = (reference, self.load(reference.network, input_shape))
            ref = self._reference[1]
        raw, scaled, speeds = [], [], []
        for r in range(s.rounds):
            warmup = s.warmup if r == 0 else 2
            t = self._median_ms(runtime, x, warmup)
            speed = 1.0
            if ref is not None and reference is not None:
                speed = self._median_ms(ref, x, warmup) / reference.table_ms
            raw.append(t)
            scaled.append(t / speed)
            speeds.append(speed)
        t = _timing(scaled, s.rounds * s.runs)
        return NetworkTiming(t.median_ms, t.p10_ms, t.p90_ms, t.runs,
                             round(float(np.median(raw)), 5), round(float(np.median(speeds)), 4))


@dataclass(frozen=True, eq=False)
class Reference:
    """A network timed when the table was made (``table_ms``), timed again beside each
    measurement so that a busy shared host is compared with itself: the measurement is
    scaled to the speed the host had when the table was made."""

    network: nn.Module
    table_ms: float


@dataclass(frozen=True)
class NetworkTiming(Timing):
    """A network's timing (scaled by ``host_speed`` when a reference was given) and the
    unscaled median."""

    raw_median_ms: float = 0.0
    host_speed: float = 1.0


def clock_of(runtime: Runtime, threads: int | None) -> str:
    """``thread-cpu`` where the work runs on the calling thread alone (a CPU runtime with
    one intra-op thread): its CPU clock leaves out the time other processes hold the core,
    so a shared host measures what an idle one would (wall time, not CPU time, elsewhere)."""
    if runtime.device == "cpu" and threads == 1:
        return "thread-cpu"
    return "cuda-events" if runtime.async_cuda else "host-clock"
