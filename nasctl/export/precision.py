"""Reduced precision as ONNX graphs: ``model.fp16.onnx`` and ``model.int8.onnx`` beside
the fp32 ``model.onnx``.

Precision lives in the graph, not in runtime flags, so every runtime (ONNX Runtime on CPU
or CUDA, its TensorRT provider, native TensorRT built strongly typed) runs the same file,
and what ONNX Runtime on a CPU proves is what a GPU runs.

- fp16: onnxconverter-common's float16 conversion with fp32 inputs and outputs.
- int8: explicit QuantizeLinear/DequantizeLinear pairs from ONNX Runtime's static
  quantization in QDQ format after its pre-processing: symmetric int8 weights per output
  channel, symmetric int8 activations, zero points 0 (what TensorRT's explicit
  quantization consumes; no ``reduce_range``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.atomic import write_bytes
from nasctl.errors import NasctlError
from nasctl.export.onnx_export import one_line, quiet_logger

if TYPE_CHECKING:
    import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class PrecisionError(NasctlError):
    """A reduced-precision graph could not be made from the fp32 graph."""


def graph_name(precision: str) -> str:
    """The file name of a precision's ONNX graph."""
    return "model.onnx" if precision == "fp32" else f"model.{precision}.onnx"


def parse_precisions(text: str) -> tuple[str, ...]:
    """``fp32,fp16`` -> ('fp32', 'fp16'), in the order given, duplicates dropped."""
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in items if t not in PRECISIONS]
    if not items or unknown:
        raise NasctlError(f"--precision takes a comma list of {', '.join(PRECISIONS)}, "
                          f"not {text!r}")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Calibration:
    """Real images for int8 calibration, normalized as the model expects."""

    images: np.ndarray  # float32 [N, 3, H, W]
    source: str  # what they are, for the report
    method: str = "minmax"
    batch: int = 1  # images per calibration call: 1 for a static-batch graph

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise NasctlError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, "
                              f"not {self.method!r}")
        if len(self.images) < self.batch:
            raise NasctlError(f"int8 calibration needs at least {self.batch} images")


@dataclass
class PrecisionGraph:
    precision: str
    path: str
    source: str  # the fp32 graph it was made from
    tool: str
    seconds: float
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    calibration: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_precision_graph(fp32_path: str | os.PathLike[str], precision: str,
                         out_path: str | os.PathLike[str],
                         calibration: Calibration | None = None) -> PrecisionGraph:
    """Write ``precision``'s graph of the fp32 graph at ``fp32_path`` to ``out_path``."""
    start = time.perf_counter()
    if precision == "fp16":
        tool = _write_fp16(Path(fp32_path), Path(out_path))
        calib = None
    elif precision == "int8":
        if calibration is None:
            raise PrecisionError("an int8 graph needs calibration images")
        tool = _write_int8(Path(fp32_path), Path(out_path), calibration)
        calib = {"source": calibration.source, "images": len(calibration.images),
                 "method": calibration.method}
    else:
        raise PrecisionError(f"no graph conversion for {precision!r} "
                             f"(known: {', '.join(PRECISIONS[1:])})")
    quantize, dequantize = count_qdq(out_path)
    return PrecisionGraph(precision=precision, path=os.fspath(out_path),
                          source=os.fspath(fp32_path), tool=tool,
                          seconds=round(time.perf_counter() - start, 2),
                          quantize_nodes=quantize, dequantize_nodes=dequantize,
                          calibration=calib)


def count_qdq(path: str | os.PathLike[str]) -> tuple[int, int]:
    """QuantizeLinear and DequantizeLinear node counts of an ONNX file."""
    import onnx

    ops = [node.op_type for node in onnx.load(os.fspath(path)).graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")


def _write_fp16(source: Path, out: Path) -> str:
    import onnx

    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise PrecisionError("fp16 graphs need onnxconverter-common "
                             "(pip install onnxconverter-common)") from exc
    try:
        with warnings.catch_warnings():
            # it warns for each tensor whose weights it clamps to its defaults (|x| in
            # [1e-7, 1e4]): what the conversion is meant to do, and a library never prints
            warnings.filterwarnings("ignore", message="the float32 number",
                                    category=UserWarning)
            model = float16.convert_float_to_float16(onnx.load(str(source)),
                                                     keep_io_types=True)
    except Exception as exc:  # the converter raises bare exceptions on graphs it cannot type
        raise PrecisionError(f"fp16 conversion of {source} failed: {one_line(exc)}") from None
    write_bytes(out, model.SerializeToString())
    return "onnxconverter_common.float16 (keep_io_types)"


def _write_int8(source: Path, out: Path, calibration: Calibration) -> str:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = onnx.load(str(source)).graph.input[0].name
    images, step = calibration.images, calibration.batch

    class _Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = 0

        def get_next(self) -> dict[str, Any] | None:
            if self._next + step > len(images):
                return None
            batch = images[self._next:self._next + step]
            self._next += step
            return {input_name: batch}

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibration.method]
    # the quantizer warns on the root logger (e.g. per-channel axes of BN vectors)
    with tempfile.TemporaryDirectory(prefix="nasctl-int8-") as tmp, \
            quiet_logger(None, logging.ERROR):
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        try:
            quant_pre_process(str(source), str(prepared))
            quantize_static(
                str(prepared), str(quantized), _Images(), quant_format=QuantFormat.QDQ,
                per_channel=True, weight_type=QuantType.QInt8,
                activation_type=QuantType.QInt8, calibrate_method=method,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except NasctlError:
            raise
        except Exception as exc:
            raise PrecisionError(f"int8 quantization of {source} failed: "
                                 f"{one_line(exc)}") from None
        write_bytes(out, quantized.read_bytes())
    return (f"onnxruntime.quantization.quantize_static (QDQ, per-channel symmetric int8 "
            f"weights, symmetric int8 activations, {calibration.method})")
