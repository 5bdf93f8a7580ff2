"""Runtimes behind one interface: PyTorch eager, ONNX Runtime (CPU, CUDA EP, TensorRT EP)
and native TensorRT (nasctl.deploy.trt_runtime).

A runtime says whether it can run here (``unavailable_reason()`` is None) before anything
is loaded; callers report an unavailable runtime instead of crashing on it. A runtime that
loads but silently falls back to another device (ONNX Runtime does that when CUDA libraries
are missing) raises BackendUnavailable from ``load``.
"""

from __future__ import annotations

import copy
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nasctl.errors import BackendUnavailable

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

RUNTIME_NAMES = ("torch", "torch-cuda", "ort", "ort-cuda", "ort-trt", "trt")
WORKSPACE_BYTES = 4 << 30


@dataclass
class Artifacts:
    """Everything a runtime may load: the PyTorch network, the ONNX file, the engine."""

    net: nn.Module | None = None
    onnx_path: str | None = None
    engine_path: str | None = None
    cache_dir: str | None = None  # ORT TensorRT EP engine/timing caches
    calib_cache: str | None = None  # a TensorRT INT8 calibration cache, for the ORT TRT EP


class Runtime(ABC):
    name: ClassVar[str]
    device: ClassVar[str]  # "cpu" or "cuda"
    # True when run() only enqueues work on the current torch CUDA stream, so latency is
    # measured with CUDA events; otherwise run() returns when the work is done.
    async_cuda: ClassVar[bool] = False

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        self.precision = precision
        self.threads = threads

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when this runtime can run here, else why not (one line)."""

    def available(self) -> bool:
        return self.unavailable_reason() is None

    @abstractmethod
    def load(self, artifacts: Artifacts) -> None: ...

    def try_load(self, artifacts: Artifacts) -> str | None:
        """Load if this runtime can run here; None on success, else why not (one line)."""
        reason = self.unavailable_reason()
        if reason is None:
            try:
                self.load(artifacts)
            except BackendUnavailable as exc:
                reason = str(exc)
        return reason

    @abstractmethod
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Host array in, host array out (used for parity)."""

    def staged(self, inputs: np.ndarray) -> Callable[[], Any]:
        """A zero-argument inference on inputs already placed where the runtime computes
        (used for latency: host<->device copies are not part of the timed region)."""
        return lambda: self.run(inputs)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device, "precision": self.precision,
                "threads": self.threads}

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"{self.name}: {reason}")


def _cuda_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


class TorchRuntime(Runtime):
    """PyTorch eager, the reference. fp16 on CUDA runs the network in half precision."""

    name = "torch"
    device = "cpu"

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(precision, threads)
        self._net: nn.Module | None = None

    def unavailable_reason(self) -> str | None:
        if self.precision == "int8":
            return "no INT8 execution in PyTorch eager"
        if self.precision == "fp16" and self.device == "cpu":
            return "fp16 eager is a GPU setting (CPU half kernels are slow and partial)"
        return _cuda_reason() if self.device == "cuda" else None

    def load(self, artifacts: Artifacts) -> None:
        import torch

        self._require()
        if artifacts.net is None:
            raise BackendUnavailable(f"{self.name}: needs the PyTorch model, not an exported file")
        if self.device == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        net = artifacts.net.eval()
        if self.device != "cpu" or self.precision != "fp32":
            # a private copy: the shared network stays an fp32 CPU reference
            net = copy.deepcopy(net).to(self.device)
            if self.precision == "fp16":
                net = net.half()
        self._net = net

    def _tensor(self, inputs: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(inputs).to(self.device)
        return x.half() if self.precision == "fp16" else x

    def run(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        assert self._net is not None, "load() first"
        with torch.inference_mode():
            out = self._net(self._tensor(inputs))
        return out.float().cpu().numpy()

    def staged(self, inputs: np.ndarray) -> Callable[[], Any]:
        import torch

        assert self._net is not None, "load() first"
        net, x = self._net, self._tensor(inputs)

        def infer() -> Any:
            with torch.inference_mode():
                return net(x)

        return infer


class TorchCudaRuntime(TorchRuntime):
    name = "torch-cuda"
    device = "cuda"
    async_cuda = True


class OrtRuntime(Runtime):
    """ONNX Runtime on the CPU execution provider (full graph optimization: BN folding,
    NCHWc layouts)."""

    name = "ort"
    device = "cpu"
    provider = "CPUExecutionProvider"

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(precision, threads)
        self._session: Any = None

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if self.precision != "fp32":
            return f"{self.precision} needs a TensorRT runtime; this one runs the fp32 ONNX graph"
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return (f"{self.provider} is not in this onnxruntime build "
                    f"(available: {', '.join(ort.get_available_providers())})")
        return self._device_reason()

    def _device_reason(self) -> str | None:
        return None

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        return [self.provider]

    def load(self, artifacts: Artifacts) -> None:
        import onnxruntime as ort

        self._require()
        if artifacts.onnx_path is None:
            raise BackendUnavailable(f"{self.name}: needs an ONNX model")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        session = ort.InferenceSession(artifacts.onnx_path, sess_options=opts,
                                       providers=self.provider_chain(artifacts))
        used = session.get_providers()
        if not used or used[0] != self.provider:
            # ORT falls back to the next provider when one cannot initialise.
            raise BackendUnavailable(
                f"{self.name}: onnxruntime could not start {self.provider} "
                f"(session runs on {', '.join(used)})"
            )
        self._session = session
        self._input = session.get_inputs()[0].name

    def run(self, inputs: np.ndarray) -> np.ndarray:
        import numpy as np

        assert self._session is not None, "load() first"
        (out,) = self._session.run(None, {self._input: np.ascontiguousarray(inputs)})
        return np.asarray(out)

    def staged(self, inputs: np.ndarray) -> Callable[[], Any]:
        import numpy as np
        import onnxruntime as ort

        assert self._session is not None, "load() first"
        if self.device == "cpu":
            feed = {self._input: np.ascontiguousarray(inputs)}
            return lambda: self._session.run(None, feed)
        # GPU: bind input and output on the device so no host copies are timed
        binding = self._session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(inputs), "cuda", 0)
        binding.bind_ortvalue_input(self._input, value)
        binding.bind_output(self._session.get_outputs()[0].name, "cuda", 0)

        def infer() -> Any:
            self._session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return infer


class OrtCudaRuntime(OrtRuntime):
    name = "ort-cuda"
    device = "cuda"
    provider = "CUDAExecutionProvider"

    def _device_reason(self) -> str | None:
        return _cuda_reason()

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        cuda = {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE",
                "do_copy_in_default_stream": True}
        return [(self.provider, cuda), "CPUExecutionProvider"]


class OrtTensorRTRuntime(OrtRuntime):
    """The ORT TensorRT EP: builds its own engine (cached under ``cache_dir``)."""

    name = "ort-trt"
    device = "cuda"
    provider = "TensorrtExecutionProvider"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return (f"{self.provider} is not in this onnxruntime build "
                    f"(available: {', '.join(ort.get_available_providers())})")
        return _cuda_reason()

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        cache = artifacts.cache_dir or str(Path(artifacts.onnx_path or ".").parent / "ort_trt")
        Path(cache).mkdir(parents=True, exist_ok=True)
        trt: dict[str, Any] = {
            "device_id": 0,
            "trt_max_workspace_size": WORKSPACE_BYTES,
            "trt_fp16_enable": self.precision in ("fp16", "int8"),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
        if self.precision == "int8":
            if artifacts.calib_cache is None or not Path(artifacts.calib_cache).exists():
                raise BackendUnavailable(
                    f"{self.name}: INT8 needs a calibration cache; build the native TensorRT "
                    "engine with --int8 first (it writes one)"
                )
            # the EP resolves the table name relative to its engine cache folder
            table = Path(cache) / Path(artifacts.calib_cache).name
            if table.resolve() != Path(artifacts.calib_cache).resolve():
                table.write_bytes(Path(artifacts.calib_cache).read_bytes())
            trt.update(trt_int8_enable=True, trt_int8_calibration_table_name=table.name,
                       trt_int8_use_native_calibration_table=True)
        cuda = {"device_id": 0, "do_copy_in_default_stream": True}
        return [(self.provider, trt), ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


def make_runtime(name: str, precision: str = "fp32", threads: int | None = None) -> Runtime:
    """A runtime by name (see RUNTIME_NAMES)."""
    if name == "trt":
        from nasctl.deploy.trt_runtime import TensorRTRuntime

        return TensorRTRuntime(precision, threads)
    classes: dict[str, type[Runtime]] = {
        "torch": TorchRuntime,
        "torch-cuda": TorchCudaRuntime,
        "ort": OrtRuntime,
        "ort-cuda": OrtCudaRuntime,
        "ort-trt": OrtTensorRTRuntime,
    }
    try:
        return classes[name](precision, threads)
    except KeyError:
        raise BackendUnavailable(
            f"unknown runtime {name!r} (known: {', '.join(RUNTIME_NAMES)})"
        ) from None
