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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.atomic import write_bytes
from nasctl.deploy.parity import Tolerance
from nasctl.errors import NasctlError
from nasctl.export.onnx_export import one_line, quiet_logger

if TYPE_CHECKING:
    import numpy as np

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class PrecisionError(NasctlError):
    """A reduced-precision graph could not be made from the fp32 graph."""


Writer = Callable[[Path, Path, "Calibration | None"], str]  # fp32 graph, out -> tool used
Detect = Callable[[frozenset[str], frozenset[int]], bool]  # graph ops, initializer types


@dataclass(frozen=True)
class Precision:
    """Everything nasctl knows about one precision; every module reads it from here."""

    name: str
    suffix: str  # of its files: model{suffix}.onnx, model{suffix}.engine
    writer: Writer | None  # makes its graph from the fp32 one (None: the export itself)
    needs_calibration: bool  # a Q/DQ graph: calibrated on real images
    torch_dtype: str | None  # what PyTorch runs it as (None: PyTorch does not)
    tolerance: Tolerance  # parity preset (docs/results.md), each field overridable
    detect: Detect | None  # whether a graph holds it (None: what no other row claims)

    def graph_name(self) -> str:
        return f"model{self.suffix}.onnx"

    def engine_name(self) -> str:
        return f"model{self.suffix}.engine"


def _has_qdq(ops: frozenset[str], types: frozenset[int]) -> bool:
    return "QuantizeLinear" in ops


def _has_half(ops: frozenset[str], types: frozenset[int]) -> bool:
    import onnx

    return onnx.TensorProto.FLOAT16 in types


def graph_name(precision: str) -> str:
    """The file name of a precision's ONNX graph."""
    return precision_row(precision).graph_name()


def precision_row(name: str) -> Precision:
    try:
        return PRECISION_TABLE[name]
    except KeyError:
        raise PrecisionError(f"unknown precision {name!r} (known: {', '.join(PRECISIONS)})"
                             ) from None


def detect_precision(ops: frozenset[str], types: frozenset[int]) -> str:
    """The precision an ONNX graph holds, from its ops and initializer types."""
    claimed = [p.name for p in PRECISION_TABLE.values() if p.detect and p.detect(ops, types)]
    base = [p.name for p in PRECISION_TABLE.values() if p.detect is None]
    return (claimed or base)[0]


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
    row = precision_row(precision)
    if row.writer is None:
        raise PrecisionError(f"the {precision} graph is the ONNX export itself")
    calib = None
    if row.needs_calibration:
        if calibration is None:
            raise PrecisionError(f"a {precision} graph needs calibration images")
        calib = {"source": calibration.source, "images": len(calibration.images),
                 "method": calibration.method}
    tool = row.writer(Path(fp32_path), Path(out_path), calibration)
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


def _write_fp16(source: Path, out: Path, calibration: Calibration | None) -> str:
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


def _write_int8(source: Path, out: Path, calibration: Calibration | None) -> str:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    assert calibration is not None  # make_precision_graph checks needs_calibration
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


# fp32: only summation order, fused kernels and folded BatchNorms differ, but through 20
# cells that adds up: DARTS_V2 (random weights, real BN statistics, logits RMS 0.17) shows
# 2.3e-4 max abs error in ONNX Runtime. A real bug (a wrong fold, a missing op) is
# orders of magnitude above these. fp16 (10-bit mantissa) agrees on top-1 almost
# everywhere; int8 quantization noise flips near-tied images: a Q/DQ graph that agrees on
# 95-98% of them loses well under a point of accuracy. The atol/rtol of fp16/int8 are
# reported (violations), not judged, unless given.
PRECISION_TABLE: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "", None, needs_calibration=False, torch_dtype="float32",
              tolerance=Tolerance(atol=1e-3, rtol=1e-3, min_top1=0.99), detect=None),
    Precision("fp16", ".fp16", _write_fp16, needs_calibration=False, torch_dtype="float16",
              tolerance=Tolerance(atol=2e-2, rtol=2e-2, min_top1=0.98, elementwise=False,
                                  max_accuracy_drop=0.01), detect=_has_half),
    Precision("int8", ".int8", _write_int8, needs_calibration=True, torch_dtype=None,
              tolerance=Tolerance(atol=2e-1, rtol=2e-1, min_top1=0.90, elementwise=False,
                                  max_accuracy_drop=0.02), detect=_has_qdq),
)}
PRECISIONS = tuple(PRECISION_TABLE)
