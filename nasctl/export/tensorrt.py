"""TensorRT engine building, one strongly typed path for TensorRT 10 and 11.

Precision lives in the ONNX graph (``model.fp16.onnx``, the Q/DQ ``model.int8.onnx``):
the network is created ``STRONGLY_TYPED`` (required on 10, every network is on 11) and no
precision flag is set; TensorRT 11 removed them with the INT8 calibrators. fp32 engines
are built with TF32 cleared unless asked for, so their parity is fp32 parity.

The module imports without TensorRT: ``tensorrt`` is imported inside the functions that
need it. Beware that ``tensorrt-stubs`` installs a bare ``tensorrt`` folder of type stubs,
so ``import tensorrt`` succeeds without the library; availability means the real module
(one with ``Builder``).

The engine file is exactly ``build_serialized_network``'s bytes, loadable by trtexec
(``--loadEngine``); the build settings go to a sidecar ``<engine>.json``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.atomic import write_bytes, write_json
from nasctl.deploy.events import EngineStep, OnDeployEvent
from nasctl.errors import BackendUnavailable, NasctlError
from nasctl.export.precision import PRECISIONS

if TYPE_CHECKING:
    import tensorrt as trt


class EngineBuildError(NasctlError):
    """TensorRT could not parse the ONNX model or build an engine from it."""


def tensorrt_unavailable_reason() -> str | None:
    """None when the TensorRT library can be used here, else why not (one line)."""
    try:
        import tensorrt
    except ImportError:
        return "TensorRT is not installed (pip install 'nasctl[tensorrt]' on an NVIDIA GPU machine)"
    except Exception as exc:  # a broken install fails with OSError/RuntimeError from its libs
        return f"TensorRT failed to load: {str(exc).strip().splitlines()[0]}"
    if not hasattr(tensorrt, "Builder"):
        return ("TensorRT is not installed: `import tensorrt` finds only type stubs "
                "(tensorrt-stubs), not the library; install TensorRT 10 or 11 "
                "(pip install 'nasctl[tensorrt]') on an NVIDIA GPU machine")
    return None


def require_tensorrt() -> str:
    """The TensorRT version, or BackendUnavailable with a message a user can act on."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    import tensorrt as trt

    return str(trt.__version__)


def make_logger(min_severity: trt.ILogger.Severity | None = None) -> trt.ILogger:
    """A TensorRT logger that keeps messages (library code never prints) so build errors
    can be surfaced in exceptions and reports."""
    import tensorrt as trt

    class _Collecting(trt.ILogger):
        def __init__(self, threshold: trt.ILogger.Severity) -> None:
            trt.ILogger.__init__(self)
            self.threshold = threshold
            self.messages: list[str] = []

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            if int(severity) <= int(self.threshold):
                self.messages.append(f"[{str(severity).rsplit('.', 1)[-1]}] {msg}")

    return _Collecting(min_severity if min_severity is not None else trt.ILogger.WARNING)


def logged(logger: trt.ILogger) -> list[str]:
    return list(getattr(logger, "messages", []))


@dataclass
class EngineSettings:
    precision: str = "fp32"  # the graph's precision, recorded in the sidecar
    workspace_mib: int = 4096
    # batch range of the optimization profile when the ONNX batch axis is dynamic
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 32
    optimization_level: int = 3
    timing_cache: str | None = None
    tf32: bool = False  # fp32 engines: allow TF32 (faster, ~1e-3 relative error)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            known = ", ".join(PRECISIONS)
            raise EngineBuildError(f"unknown precision {self.precision!r} ({known})")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise EngineBuildError(
                f"batch profile needs 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )


@dataclass
class EngineBuild:
    engine_path: str
    sidecar_path: str
    onnx_path: str
    tensorrt_version: str
    settings: dict[str, Any]
    inputs: dict[str, dict[str, list[int]]]
    outputs: dict[str, list[int]]
    engine_bytes: int
    seconds: float
    onnx_sha256: str
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str],
                 settings: EngineSettings | None = None,
                 on_event: OnDeployEvent | None = None) -> EngineBuild:
    """Parse ``onnx_path`` (the graph of ``settings.precision``) and build a serialized,
    strongly typed engine at ``engine_path``. Anything TensorRT raises becomes an
    EngineBuildError with its message."""
    version = require_tensorrt()
    settings = settings or EngineSettings()
    try:
        return _build(Path(onnx_path), engine_path, settings, version,
                      on_event or (lambda event: None))
    except NasctlError:
        raise
    except Exception as exc:  # pybind11 raises RuntimeError/TypeError/... from the library
        first = str(exc).strip().splitlines()
        raise EngineBuildError(
            f"TensorRT failed on {onnx_path}: {type(exc).__name__}: {first[0] if first else ''}"
        ) from None


def _build(onnx_file: Path, engine_path: str | os.PathLike[str], settings: EngineSettings,
           version: str, emit: OnDeployEvent) -> EngineBuild:
    import tensorrt as trt

    start = time.perf_counter()
    logger = make_logger()
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    emit(EngineStep("parse", str(onnx_file)))
    if not parser.parse_from_file(str(onnx_file)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT could not parse {onnx_file}: " + "; ".join(errors or logged(logger))
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.optimization_level
    if not settings.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile, inputs = _profile(builder, network, settings)
    config.add_optimization_profile(profile)

    timing_cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path and \
        timing_cache_path.exists() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)

    emit(EngineStep("build", settings.precision))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            "TensorRT failed to build the engine: " + "; ".join(logged(logger)[-5:] or ["no log"])
        )
    engine_bytes = bytes(memoryview(serialized))
    write_bytes(engine_path, engine_bytes)
    if timing_cache_path is not None:
        write_bytes(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))

    outputs = {network.get_output(i).name: dims_list(network.get_output(i).shape)
               for i in range(network.num_outputs)}
    sidecar = Path(f"{os.fspath(engine_path)}.json")
    result = EngineBuild(
        engine_path=os.fspath(engine_path), sidecar_path=str(sidecar),
        onnx_path=str(onnx_file), tensorrt_version=version,
        settings=asdict(settings), inputs=inputs, outputs=outputs,
        engine_bytes=len(engine_bytes), seconds=round(time.perf_counter() - start, 2),
        onnx_sha256=hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
        messages=logged(logger),
    )
    # The sidecar travels with its engine (an export is built in a temporary folder and
    # renamed into place): its paths are relative to its own folder.
    write_json(sidecar, {**result.to_dict(), "engine_path": Path(engine_path).name,
                         "sidecar_path": sidecar.name,
                         "onnx_path": os.path.relpath(onnx_file, sidecar.parent)})
    return result


def dims_list(dims: trt.Dims) -> list[int]:
    # Dims supports len() and indexing but declares no __iter__
    return [dims[i] for i in range(len(dims))]


def _parser_error(error: trt.ParserError) -> str:
    return f"node {error.node()}: {error.desc()} ({error.code()})"


def _profile(builder: trt.Builder, network: trt.INetworkDefinition,
             settings: EngineSettings) -> tuple[trt.IOptimizationProfile,
                                                dict[str, dict[str, list[int]]]]:
    """One optimization profile: the batch range for dynamic-batch inputs, the fixed shape
    otherwise. Only the batch axis may be dynamic."""
    import tensorrt as trt

    profile = builder.create_optimization_profile()
    shapes: dict[str, dict[str, list[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = dims_list(tensor.shape)
        if any(d < 0 for d in dims[1:]):
            raise EngineBuildError(
                f"input {tensor.name!r} has dynamic non-batch axes {dims}; only the batch "
                "axis may be dynamic"
            )
        if dims[0] < 0:
            lo, opt, hi = ([b, *dims[1:]] for b in
                           (settings.min_batch, settings.opt_batch, settings.max_batch))
        else:
            lo = opt = hi = dims
        profile.set_shape(tensor.name, trt.Dims(lo), trt.Dims(opt), trt.Dims(hi))
        shapes[tensor.name] = {"min": lo, "opt": opt, "max": hi}
    return profile, shapes
