"""ONNX export: the dynamo exporter first, the TorchScript exporter as a recorded fallback,
then a full checker pass, shape inference, optional simplification and metadata."""

from __future__ import annotations

import errno
import importlib.util
import io
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nasctl.atomic import write_bytes
from nasctl.errors import NasctlError

if TYPE_CHECKING:
    import onnx
    from torch import nn

Exporter = Literal["auto", "dynamo", "torchscript"]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's lowest; the TorchScript fallback must match it
# Ops a lean DARTS-network graph never needs: their presence means the export left debris.
STRAY_OPS = frozenset({"Identity", "Dropout", "Constant"})


class ExportError(NasctlError):
    """Neither ONNX exporter could export the model, or the result failed its checks."""


@dataclass
class OnnxExport:
    path: str
    exporter: str
    fallback_reason: str | None
    opset: int
    dynamic_batch: bool
    input_name: str
    output_name: str
    input_shape: list[int | str]
    simplifier: str | None
    op_counts: dict[str, int]
    stray_ops: dict[str, int]
    metadata: dict[str, str]
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_onnx(net: nn.Module, path: str | os.PathLike[str],
                input_shape: tuple[int, int, int], *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False, metadata: dict[str, str] | None = None,
                exporter: Exporter = "auto", simplify: bool = True) -> OnnxExport:
    """Export ``net`` (eval mode) to a single self-contained ONNX file at ``path``."""
    import onnx

    start = time.perf_counter()
    net.eval()
    caught: list[str] = []
    fallback_reason = None
    with tempfile.TemporaryDirectory(prefix="nasctl-onnx-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        if exporter in ("auto", "dynamo"):
            try:
                _export(net, raw, input_shape, opset, dynamic_batch, dynamo=True, caught=caught)
                used = "dynamo"
            except Exception as exc:  # the exporter raises many types; record and fall back
                _raise_if_disk_full(exc, raw)
                if exporter == "dynamo":
                    raise ExportError(f"dynamo ONNX export failed: {one_line(exc)}") from None
                fallback_reason = f"dynamo exporter failed: {_root_cause(exc)}"
        if exporter == "torchscript" or fallback_reason is not None:
            try:
                _export(net, raw, input_shape, opset, dynamic_batch, dynamo=False, caught=caught)
            except Exception as exc:
                _raise_if_disk_full(exc, raw)
                prefix = f"{fallback_reason}; " if fallback_reason else ""
                raise ExportError(
                    f"{prefix}TorchScript ONNX export failed: {one_line(exc)}"
                ) from None
            used = "torchscript"
        model = onnx.load(str(raw))
    if used == "torchscript":
        # The TorchScript exporter leaves Identity/Constant nodes; the dynamo exporter runs
        # this same optimizer itself.
        import onnxscript

        model = onnxscript.optimizer.optimize(model)
    model, simplifier = _simplify(model) if simplify else (model, None)
    model = check_and_infer(model)
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                   None)
    if written != opset:  # never report an opset that was not applied
        raise ExportError(f"the {used} exporter wrote opset {written}, not the requested "
                          f"{opset}")
    meta = dict(metadata or {})
    meta["nasctl.exporter"] = used
    set_metadata(model, meta)
    write_bytes(path, model.SerializeToString())
    shape: list[int | str] = ["batch" if dynamic_batch else 1, *input_shape]
    ops = Counter(node.op_type for node in model.graph.node)
    return OnnxExport(
        path=os.fspath(path), exporter=used, fallback_reason=fallback_reason, opset=opset,
        dynamic_batch=dynamic_batch, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
        input_shape=shape, simplifier=simplifier, op_counts=dict(ops),
        stray_ops={op: n for op, n in ops.items() if op in STRAY_OPS}, metadata=meta,
        seconds=round(time.perf_counter() - start, 2), warnings=sorted(set(caught)),
    )


def _export(net: nn.Module, path: Path, input_shape: tuple[int, int, int], opset: int,
            dynamic_batch: bool, dynamo: bool, caught: list[str]) -> None:
    import torch

    # A batch of 2 for dynamic export: torch.export specializes a size-1 dimension.
    example = torch.randn(2 if dynamic_batch else 1, *input_shape)
    kwargs: dict[str, Any] = {}
    if dynamic_batch and dynamo:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=65536)},)
    elif dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if dynamo:
        kwargs["external_data"] = False
    # Exporters print progress, log and warn freely; library code keeps the terminal clean
    # (the warnings are kept in the result, the failure reason in the exception).
    with warnings.catch_warnings(record=True) as records, _silenced(), quiet_logger("torch"):
        warnings.simplefilter("always")
        torch.onnx.export(net, (example,), str(path), dynamo=dynamo, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
                          **kwargs)
    caught.extend(one_line(r.message) for r in records)


@contextmanager
def _silenced() -> Iterator[None]:
    """Silence stdout and stderr, Python's and the file descriptors (the TorchScript
    exporter prints its IR from C++ when it fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink, redirect_stdout(io.StringIO()), \
                redirect_stderr(io.StringIO()):
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


@contextmanager
def quiet_logger(name: str | None, level: int = logging.CRITICAL) -> Iterator[None]:
    """Raise one logger's level (None: the root logger) for the duration: library code
    keeps the terminal to the CLI."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def check_and_infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Full checker pass, then strict shape inference (every tensor gets a shape)."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                 data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported ONNX model failed its checks: {one_line(exc)}") from None


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace any earlier entries with the same keys; keys sorted for stable files."""
    import onnx

    current = {p.key: p.value for p in model.metadata_props}
    current.update({k: str(v) for k, v in metadata.items()})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(sorted(current.items())))


@dataclass(frozen=True)
class OnnxFileInfo:
    """What a runtime needs to know about a given ONNX file before running it."""

    metadata: dict[str, str]
    static_batch: int | None  # None when the batch axis is dynamic
    precision: str  # as the precision table detects it


def load_onnx_file(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """An ONNX file, or ExportError naming the file when it is not one (truncated,
    garbage, another format)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(os.fspath(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeWarning) as exc:
        raise ExportError(f"{path}: not a valid ONNX file ({one_line(exc)})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    return describe_onnx_file(path).metadata


def describe_onnx_file(path: str | os.PathLike[str]) -> OnnxFileInfo:
    from nasctl.export.precision import detect_precision

    model = load_onnx_file(path)
    weights = {t.name for t in model.graph.initializer}  # old exporters list them as inputs
    inputs = [i.name for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        listed = f" ({', '.join(inputs)})" if inputs else ""
        raise ExportError(f"{path}: the ONNX graph has {len(inputs)} inputs{listed}; nasctl "
                          "runs image classifiers with one image input")
    image = next(i for i in model.graph.input if i.name == inputs[0])
    dims = image.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    precision = detect_precision(frozenset(node.op_type for node in model.graph.node),
                                 frozenset(t.data_type for t in model.graph.initializer))
    return OnnxFileInfo(metadata={p.key: p.value for p in model.metadata_props},
                        static_batch=batch or None, precision=precision)


def simplifier_name() -> str | None:
    """The graph simplifier that is installed, if any (onnxslim preferred)."""
    for name in ("onnxslim", "onnxsim"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    name = simplifier_name()
    if name == "onnxslim":
        import onnxslim

        return onnxslim.slim(model), name
    if name == "onnxsim":
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        return (simplified, name) if ok else (model, None)
    return model, None


_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _raise_if_disk_full(exc: BaseException, path: Path) -> None:
    """A full disk under an exporter is the machine's problem, not the model's: one
    OSError naming the file (the CLI's one line, exit 2), never a fallback or a record."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            raise OSError(f"{path}: cannot write ({seen.strerror})") from None
        seen = seen.__cause__ or seen.__context__


def _root_cause(exc: BaseException) -> str:
    """The first line of the exception and of its deepest cause (the exporter wraps the
    interesting error, e.g. a data-dependent branch, in a generic one)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return f"{type(root).__name__}: {one_line(root)}"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: object) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]
