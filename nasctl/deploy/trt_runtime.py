"""Native TensorRT runtime: deserialize a plain engine file and run it with
``execute_async_v3`` on torch CUDA tensors (no pycuda). Type-checked against the
TensorRT stubs in the test suite; imports without TensorRT."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.deploy.runtime import Artifacts, Runtime, cuda_reason
from nasctl.errors import BackendUnavailable
from nasctl.export.precision import PRECISIONS
from nasctl.export.tensorrt import dims_list, logged, make_logger, tensorrt_unavailable_reason

if TYPE_CHECKING:
    import numpy as np
    import tensorrt as trt
    import torch


def torch_dtype(dtype: trt.DataType) -> torch.dtype:
    import tensorrt as trt
    import torch

    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.BF16: torch.bfloat16,
        trt.DataType.INT8: torch.int8,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.BOOL: torch.bool,
    }
    try:
        return table[dtype]
    except KeyError:
        raise BackendUnavailable(f"trt: engine tensor type {dtype} is not supported") from None


class TensorRTRuntime(Runtime):
    """Runs the engine built strongly typed from the precision's ONNX graph."""

    name = "trt"
    device = "cuda"
    consumes = "engine"
    precisions = PRECISIONS
    async_cuda = True

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(precision, threads)
        self._logger: trt.ILogger | None = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._input = ""
        self._output = ""
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def _unavailable_reason(self) -> str | None:
        return tensorrt_unavailable_reason() or cuda_reason()

    def load(self, artifacts: Artifacts) -> None:
        self._require()
        import tensorrt as trt

        path = self.artifact(artifacts)
        if not Path(path).exists():
            raise BackendUnavailable(f"{self.name}: no engine at {path} (export with --trt)")
        self._logger = make_logger()
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise BackendUnavailable(
                f"{self.name}: could not load {path} (built by another "
                f"TensorRT version or for another GPU?): {'; '.join(logged(self._logger))}"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailable(
                f"{self.name}: expected one input and one output, got {inputs} -> {outputs}"
            )
        self._engine, self._input, self._output = engine, inputs[0], outputs[0]
        self._context = engine.create_execution_context()

    def _bind(self, inputs: np.ndarray) -> tuple[Callable[[], Any], torch.Tensor]:
        """Copy ``inputs`` to the GPU, allocate the output, set addresses; return the
        enqueue function and the output tensor."""
        import torch

        assert self._engine is not None and self._context is not None, "load() first"
        engine, context = self._engine, self._context
        x = torch.from_numpy(inputs).to("cuda", torch_dtype(engine.get_tensor_dtype(self._input)))
        if not context.set_input_shape(self._input, tuple(x.shape)):
            raise BackendUnavailable(
                f"{self.name}: input shape {tuple(x.shape)} is outside the engine's profile "
                f"{[dims_list(d) for d in engine.get_tensor_profile_shape(self._input, 0)]}"
            )
        out_shape = dims_list(context.get_tensor_shape(self._output))
        out = torch.empty(out_shape, dtype=torch_dtype(engine.get_tensor_dtype(self._output)),
                          device="cuda")
        context.set_tensor_address(self._input, x.data_ptr())
        context.set_tensor_address(self._output, out.data_ptr())
        self._buffers = (x, out)  # the context holds raw addresses: keep the memory alive

        def enqueue() -> Any:
            if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
                raise BackendUnavailable(f"{self.name}: execute_async_v3 failed for {x.shape}")

        return enqueue, out

    def run(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        enqueue, out = self._bind(inputs)
        enqueue()
        torch.cuda.current_stream().synchronize()
        return out.float().cpu().numpy()

    def staged(self, inputs: np.ndarray) -> Callable[[], Any]:
        enqueue, _ = self._bind(inputs)
        return enqueue
