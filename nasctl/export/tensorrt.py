"""TensorRT engine building with the TensorRT 10 Python API.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.atomic import write_bytes, write_json
from nasctl.errors import BackendUnavailable, NasctlError

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")


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
                "(tensorrt-stubs), not the library; install TensorRT 10 "
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
    precision: str = "fp32"
    workspace_mib: int = 4096
    # batch range of the optimization profile when the ONNX batch axis is dynamic
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 32
    optimization_level: int = 3
    timing_cache: str | None = None
    calib_cache: str | None = None
    calib_batch: int = 8
    calib_source: str | None = None  # what the calibration images were (for the sidecar)

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
    tensorrt_version: str
    settings: dict[str, Any]
    inputs: dict[str, dict[str, list[int]]]
    outputs: dict[str, list[int]]
    engine_bytes: int
    seconds: float
    onnx_sha256: str
    calibration: str | None
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str],
                 settings: EngineSettings | None = None,
                 calibration_images: np.ndarray | None = None,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> EngineBuild:
    """Parse ``onnx_path`` and build a serialized engine at ``engine_path``.

    INT8 uses an entropy calibrator over ``calibration_images`` (float32 [N, 3, H, W],
    already normalized), unless ``settings.calib_cache`` exists, in which case TensorRT
    reads the scales from it and no images are needed.
    """
    version = require_tensorrt()
    import tensorrt as trt

    settings = settings or EngineSettings()
    emit = on_event or (lambda event: None)
    start = time.perf_counter()
    onnx_file = Path(onnx_path)
    logger = make_logger()
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch (the EXPLICIT_BATCH flag is deprecated
    # and ignored), so no creation flags are needed.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    emit({"event": "trt_parse", "onnx": str(onnx_file)})
    if not parser.parse_from_file(str(onnx_file)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(
            f"TensorRT could not parse {onnx_file}: " + "; ".join(errors or logged(logger))
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    config.builder_optimization_level = settings.optimization_level
    if settings.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            emit({"event": "trt_warning", "message": "this GPU has no fast FP16"})
        config.set_flag(trt.BuilderFlag.FP16)

    profile, inputs = _profile(builder, network, settings)
    config.add_optimization_profile(profile)

    calibration = None
    if settings.precision == "int8":
        calibration = _setup_int8(builder, network, config, settings, calibration_images)

    timing_cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path and \
        timing_cache_path.exists() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, False)

    emit({"event": "trt_build", "precision": settings.precision})
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
        engine_path=os.fspath(engine_path), sidecar_path=str(sidecar), tensorrt_version=version,
        settings=asdict(settings), inputs=inputs, outputs=outputs,
        engine_bytes=len(engine_bytes), seconds=round(time.perf_counter() - start, 2),
        onnx_sha256=hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
        calibration=calibration, messages=logged(logger),
    )
    write_json(sidecar, result.to_dict())
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


def _setup_int8(builder: trt.Builder, network: trt.INetworkDefinition,
                config: trt.IBuilderConfig, settings: EngineSettings,
                images: np.ndarray | None) -> str:
    """INT8 with entropy calibration. In explicit-batch networks the calibrator reports a
    batch size of 1 and each get_batch() fills the input at the calibration profile's
    shape: the network's own batch when it is static, ``calib_batch`` when it is dynamic."""
    import tensorrt as trt

    tensor = network.get_input(0)
    dims = dims_list(tensor.shape)
    per_call = dims[0] if dims[0] > 0 else settings.calib_batch
    cache = Path(settings.calib_cache) if settings.calib_cache else None
    reused = cache is not None and cache.exists()
    if not reused and (images is None or len(images) < per_call):
        raise EngineBuildError(
            f"INT8 needs at least {per_call} calibration images (--calib-data) "
            "or an existing calibration cache"
        )
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = entropy_calibrator(images, per_call, cache)
    calib_profile = builder.create_optimization_profile()
    shape = trt.Dims([per_call, *dims[1:]])
    calib_profile.set_shape(tensor.name, shape, shape, shape)
    config.set_calibration_profile(calib_profile)
    if reused:
        return f"reused calibration cache {cache}"
    assert images is not None
    used = len(images) // per_call * per_call
    return f"entropy calibration on {used} images from {settings.calib_source or 'memory'}"


def entropy_calibrator(images: np.ndarray | None, batch: int,
                       cache: Path | None) -> trt.IInt8EntropyCalibrator2:
    """An IInt8EntropyCalibrator2 that feeds ``images`` ``batch`` at a time from one CUDA
    buffer and reads/writes the calibration cache at ``cache``."""
    import tensorrt as trt
    import torch

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._cursor = 0
            self._device: torch.Tensor | None = None

        def get_batch_size(self) -> int:
            return 1  # explicit batch: the batch is part of the input shape

        def get_batch(self, names: list[str]) -> list[int]:
            if images is None or self._cursor + batch > len(images):
                return []  # no more batches: calibration ends
            chunk = torch.from_numpy(images[self._cursor:self._cursor + batch])
            self._cursor += batch
            if self._device is None:
                self._device = torch.empty(chunk.shape, dtype=torch.float32, device="cuda")
            self._device.copy_(chunk)
            torch.cuda.synchronize()
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes:
            if cache is not None and cache.exists():
                return cache.read_bytes()
            # The documented "no cache" answer is None; the stubs declare only a buffer.
            return None  # type: ignore[return-value]

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                write_bytes(cache, bytes(memoryview(data)))

    return _EntropyCalibrator()
