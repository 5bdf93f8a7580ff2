"""The runtimes: PyTorch eager (CPU, CUDA), ONNX Runtime (CPU, CUDA EP, TensorRT EP) and
native TensorRT (nasctl.deploy.trt_runtime), registered in ``RUNTIMES``. Adding one is a
class with its declarations and one entry there; names and defaults come from it."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nasctl.deploy.runtime import Artifacts, Runtime, cuda_reason
from nasctl.deploy.trt_runtime import TensorRTRuntime
from nasctl.errors import BackendUnavailable
from nasctl.export.precision import PRECISION_TABLE, PRECISIONS, precision_row

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

WORKSPACE_BYTES = 4 << 30


class TorchRuntime(Runtime):
    """PyTorch eager, the reference. fp16 on CUDA runs the network in half precision."""

    name = "torch"
    device = "cpu"
    consumes = "network"
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)  # CPU half kernels: slow, partial

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(precision, threads)
        self._net: nn.Module | None = None

    def _unavailable_reason(self) -> str | None:
        return cuda_reason() if self.device == "cuda" else None

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
            net = copy.deepcopy(net).to(self.device, self._dtype())
        self._net = net

    def _dtype(self) -> Any:
        import torch

        return getattr(torch, str(precision_row(self.precision).torch_dtype))

    def _tensor(self, inputs: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(inputs).to(self.device, self._dtype())

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
    precisions = tuple(p.name for p in PRECISION_TABLE.values() if p.torch_dtype)
    async_cuda = True


class OrtRuntime(Runtime):
    """ONNX Runtime on the CPU execution provider. fp32 and fp16 graphs run at full graph
    optimization (BN folding, NCHWc layouts); Q/DQ int8 graphs at BASIC, which keeps the
    Q/DQ pairs as fake quantization: the fused integer kernels of higher levels saturate on
    x86 CPUs without VNNI (top-1 agreement 44% against 96% for one graph)."""

    name = "ort"
    device = "cpu"
    consumes = "onnx"
    precisions = PRECISIONS
    provider = "CPUExecutionProvider"

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(precision, threads)
        self._session: Any = None

    def _unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return (f"{self.provider} is not in this onnxruntime build "
                    f"(available: {', '.join(ort.get_available_providers())})")
        return self._device_reason()

    def _device_reason(self) -> str | None:
        return None

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        return [self.provider]

    def optimization_level(self) -> str:
        quantized = precision_row(self.precision).needs_calibration  # a Q/DQ graph
        return "ORT_ENABLE_BASIC" if quantized and self.device == "cpu" else "ORT_ENABLE_ALL"

    def settings(self) -> dict[str, Any]:
        return {"provider": self.provider, "graph_optimization_level": self.optimization_level()}

    def load(self, artifacts: Artifacts) -> None:
        import onnxruntime as ort

        self._require()
        path = self.artifact(artifacts)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                self.optimization_level())
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        session = ort.InferenceSession(path, sess_options=opts,
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
        return cuda_reason()

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        cuda = {"device_id": 0, "cudnn_conv_algo_search": "EXHAUSTIVE",
                "do_copy_in_default_stream": True}
        return [(self.provider, cuda), "CPUExecutionProvider"]


class OrtTensorRTRuntime(OrtRuntime):
    """The ORT TensorRT EP: builds its own engine (cached under ``cache_dir``) from the same
    precision graphs, with its fp16/int8 options off, so the build is strongly typed."""

    name = "ort-trt"
    device = "cuda"
    provider = "TensorrtExecutionProvider"

    def _unavailable_reason(self) -> str | None:
        reason = super()._unavailable_reason()
        return reason or cuda_reason()

    def provider_chain(self, artifacts: Artifacts) -> list[Any]:
        cache = artifacts.cache_dir or str(Path(self.artifact(artifacts)).parent / "ort_trt")
        Path(cache).mkdir(parents=True, exist_ok=True)
        trt: dict[str, Any] = {
            "device_id": 0,
            "trt_max_workspace_size": WORKSPACE_BYTES,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": cache,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": cache,
        }
        cuda = {"device_id": 0, "do_copy_in_default_stream": True}
        return [(self.provider, trt), ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]


RUNTIMES: dict[str, type[Runtime]] = {
    cls.name: cls for cls in (TorchRuntime, TorchCudaRuntime, OrtRuntime, OrtCudaRuntime,
                              OrtTensorRTRuntime, TensorRTRuntime)
}
RUNTIME_NAMES = tuple(RUNTIMES)
# what `nasctl export` checks unless told otherwise: every runtime but the CUDA eager one
DEFAULT_RUNTIMES = tuple(n for n in RUNTIME_NAMES if n != "torch-cuda")


def make_runtime(name: str, precision: str = "fp32", threads: int | None = None) -> Runtime:
    """A runtime by name (see RUNTIME_NAMES)."""
    try:
        cls = RUNTIMES[name]
    except KeyError:
        raise BackendUnavailable(
            f"unknown runtime {name!r} (known: {', '.join(RUNTIME_NAMES)})"
        ) from None
    return cls(precision, threads)
