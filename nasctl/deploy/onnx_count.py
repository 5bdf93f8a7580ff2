"""Parameters and multiply-adds counted on an ONNX graph, independently of PyTorch.

MACs follow the DARTS convention (Conv, Gemm and MatMul multiply-accumulates, biases and
elementwise ops excluded), per sample: a symbolic batch dimension counts as 1. Shapes come
from ONNX shape inference on the graph itself.

Parameters are the float initializers the compute ops read. Exporters fold each
BatchNorm that follows a Conv into that Conv (2 x C affine parameters become a C-element
bias), so ``params_unfolded`` adds the Conv biases back once more: for networks whose
convolutions have no bias of their own (every DARTS-family network) it equals the
PyTorch count of the unfolded model. (Not for untrained BatchNorms: an identity BN folds
to an all-zero bias, which exporters drop.)
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from nasctl.errors import NasctlError

if TYPE_CHECKING:
    import onnx

# input positions holding learned parameters, per op; BN mean/var are buffers, not params
_PARAM_INPUTS = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "MatMul": (0, 1),
    "BatchNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
}


@dataclass
class OnnxCounts:
    macs_convfc: int
    macs_by_op: dict[str, int]
    params: int
    params_unfolded: int
    weights_convfc: int
    conv_bias: int
    norm_params: int
    by_op_params: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_onnx(model: onnx.ModelProto | str | os.PathLike[str]) -> OnnxCounts:
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model))
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    graph = model.graph
    shapes = _shapes(model)
    inits = {t.name: t for t in graph.initializer}
    macs: Counter[str] = Counter()
    params: Counter[str] = Counter()
    weights = conv_bias = norm = 0
    seen: set[str] = set()  # an initializer shared by two nodes is one set of parameters
    for node in graph.node:
        op = node.op_type
        if op in ("Conv", "ConvTranspose"):
            macs[op] += _conv_macs(node, shapes)
        elif op == "Gemm":
            macs[op] += _gemm_macs(node, shapes)
        elif op == "MatMul":
            macs[op] += _matmul_macs(node, shapes)
        for pos in _PARAM_INPUTS.get(op, ()):
            if pos >= len(node.input) or node.input[pos] not in inits:
                continue
            name = node.input[pos]
            if name in seen:
                continue
            seen.add(name)
            size = math.prod(inits[name].dims)
            params[op] += size
            if op in ("Conv", "ConvTranspose") and pos == 2:
                conv_bias += size
            elif op in ("Conv", "ConvTranspose", "Gemm", "MatMul") and (
                    op == "MatMul" or pos == 1):
                weights += size
            elif op.endswith("Normalization"):
                norm += size
    total = sum(params.values())
    return OnnxCounts(
        macs_convfc=sum(macs.values()), macs_by_op=dict(macs), params=total,
        params_unfolded=total + conv_bias, weights_convfc=weights, conv_bias=conv_bias,
        norm_params=norm, by_op_params=dict(params),
    )


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static shape of every value and initializer; symbolic dims (batch) count as 1."""
    out: dict[str, list[int]] = {}
    graph = model.graph
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tensor = vi.type.tensor_type
        if tensor.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else 1
                            for d in tensor.shape.dim]
    for init in graph.initializer:
        out[init.name] = list(init.dims)
    return out


def _shape(shapes: dict[str, list[int]], name: str, node: Any) -> list[int]:
    try:
        return shapes[name]
    except KeyError:
        raise NasctlError(
            f"ONNX counting: no inferred shape for {name!r} (input of {node.op_type} "
            f"{node.name!r}); the graph's shapes must be static apart from the batch"
        ) from None


def _conv_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    # the weight is [C_out, C_in / group, k...] (ConvTranspose: [C_in, C_out / group, k...])
    w = _shape(shapes, node.input[1], node)
    if node.op_type == "ConvTranspose":
        # every input element is scattered through a (C_out / group) x k kernel
        x = _shape(shapes, node.input[0], node)
        return math.prod(x[1:]) * w[1] * math.prod(w[2:])
    # every output element costs (C_in / group) x k multiply-adds
    out = _shape(shapes, node.output[0], node)
    return math.prod(out[1:]) * w[1] * math.prod(w[2:])


def _gemm_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    import onnx

    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    trans_a = next((onnx.helper.get_attribute_value(x) for x in node.attribute
                    if x.name == "transA"), 0)
    k = a[0] if trans_a else a[1]
    return out[1] * k  # per sample: out is [batch, N]


def _matmul_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    k = a[-1]
    # leading dims of the output beyond the batch are real work; the batch counts as 1
    return math.prod(out[1:]) * k if len(out) > 2 else out[-1] * k
