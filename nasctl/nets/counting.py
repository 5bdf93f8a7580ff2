"""Parameter and multiply-accumulate (MAC) counting.

MACs are counted at the ATen dispatch level during one eval-mode forward pass, so nothing
the network computes escapes (functional adds, pooling, concat). Two conventions:

- ``convfc`` (the DARTS family's): multiply-accumulates of convolutions and linear layers.
- ``all``: ptflops' convention: ``convfc`` plus 2 operations per element of every affine
  BatchNorm (1 if not affine), 1 per ReLU output element and 1 per pooling input element.
  The ImageNet figures of PC-DARTS (586.4M) and P-DARTS (557.4M) reproduce only under this
  one, to 0.1M (zoo.json says which figure uses which).

A hand-written counter (about 100 lines) rather than a library: thop and ptflops count
through module hooks and miss functional ops, and torch.utils.flop_counter counts only
matmul-like FLOPs; neither gives the `all` convention nor a per-candidate-op breakdown.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


@dataclass(frozen=True)
class ParamCounts:
    total: int
    without_aux: int
    aux: int


@dataclass(frozen=True)
class MacCounts:
    """MACs for batch 1. ``by_kind``: per kernel kind (conv, linear, batch_norm, relu, pool,
    and add, which neither convention counts). ``by_op``: per network part (stem,
    preprocess, each candidate op name, node_sum, classifier), counting every kind."""

    convfc: int
    all: int
    by_kind: dict[str, int] = field(default_factory=dict)
    by_op: dict[str, int] = field(default_factory=dict)
    params_used: int = 0  # parameters of the modules this forward pass ran (what an
    # exported graph keeps; excludes the auxiliary head and unread cell inputs)


def count_params(net: nn.Module) -> ParamCounts:
    total = sum(p.numel() for p in net.parameters())
    head = getattr(net, "auxiliary_head", None)
    aux = sum(p.numel() for p in head.parameters()) if isinstance(head, nn.Module) else 0
    return ParamCounts(total=total, without_aux=total - aux, aux=aux)


_CONV = {aten.convolution.default, aten._convolution.default}
_MATMUL = {aten.addmm.default, aten.mm.default, aten.bmm.default}
_BATCH_NORM = {
    aten._native_batch_norm_legit_no_training.default,
    aten._native_batch_norm_legit.default,
    aten.native_batch_norm.default,
    aten.cudnn_batch_norm.default,
}
_RELU = {aten.relu.default, aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default}
_ADD = {aten.add.Tensor, aten.add_.Tensor}
_POOL = {
    aten.max_pool2d_with_indices.default,
    aten.max_pool2d.default,
    aten.avg_pool2d.default,
    aten._adaptive_avg_pool2d.default,
    aten.mean.dim,
}


def _numel(x: Any) -> int:
    if isinstance(x, tuple | list):
        x = x[0]
    return int(x.numel()) if isinstance(x, torch.Tensor) else 0


class _MacCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.by_kind: Counter[str] = Counter()
        self.by_op: Counter[str] = Counter()
        self.labels: list[str] = ["other"]

    def _add(self, kind: str, macs: int) -> None:
        self.by_kind[kind] += macs
        self.by_op[self.labels[-1]] += macs

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if func in _CONV:
            weight = args[1]
            self._add("conv", _numel(out) * math.prod(weight.shape[1:]))
        elif func in _MATMUL:
            a, b = (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])
            self._add("linear", a.numel() * b.shape[-1])
        elif func in _BATCH_NORM:
            affine = len(args) > 1 and args[1] is not None
            self._add("batch_norm", _numel(args[0]) * (2 if affine else 1))
        elif func in _RELU:
            self._add("relu", _numel(out))
        elif func in _ADD:
            self._add("add", _numel(out))
        elif func in _POOL:
            self._add("pool", _numel(args[0]))
        return out


def _label_modules(net: nn.Module, counter: _MacCounter) -> list[Any]:
    """Hooks that name the part of the network each op runs in."""
    labels: dict[nn.Module, str] = {}
    for name, module in net.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("stem", "stem0", "stem1"):
            labels[module] = "stem"
        elif leaf in ("preprocess0", "preprocess1"):
            labels[module] = "preprocess"
        elif leaf in ("classifier", "global_pooling") and "auxiliary" not in name:
            labels[module] = "classifier"
        op_names = getattr(module, "op_names", None)
        ops = getattr(module, "_ops", None)
        if isinstance(op_names, list) and isinstance(ops, nn.ModuleList):
            for op_module, op_name in zip(ops, op_names, strict=True):
                labels[op_module] = op_name
        if hasattr(module, "_plan"):  # a cell: node sums and concat happen here
            labels[module] = "node_sum"
    def enter(label: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any) -> None:
            counter.labels.append(label)

        return hook

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        counter.labels.pop()  # a forward hook must return None, or it replaces the output

    handles = []
    for module, label in labels.items():
        handles.append(module.register_forward_pre_hook(enter(label)))
        handles.append(module.register_forward_hook(leave))
    return handles


def count_macs(net: nn.Module, input_size: int | tuple[int, int], batch: int = 1,
               channels: int = 3) -> MacCounts:
    """Count MACs of one eval-mode forward pass (auxiliary head inactive), per image.

    The pass runs on a copy of the network on the ``meta`` device: shapes only, no
    arithmetic, so counting a full ImageNet network takes about a second. A network built
    under ``torch.device("meta")`` is counted as it is, without the copy."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    on_meta = all(p.is_meta for p in net.parameters())
    shadow = (net if on_meta else copy.deepcopy(net).to("meta")).eval()
    counter = _MacCounter()
    handles = _label_modules(shadow, counter)
    ran: set[int] = set()
    for module in shadow.modules():
        if any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_hook(
                lambda m, _i, _o: ran.add(id(m))))
    try:
        with torch.no_grad(), counter:
            shadow(torch.zeros(batch, channels, h, w, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    by_kind = {k: v // batch for k, v in sorted(counter.by_kind.items())}
    by_op = {k: v // batch for k, v in sorted(counter.by_op.items(), key=lambda kv: -kv[1])}
    convfc = by_kind.get("conv", 0) + by_kind.get("linear", 0)
    everything = convfc + sum(by_kind.get(k, 0) for k in ("batch_norm", "relu", "pool"))
    params_used = sum(p.numel() for m in shadow.modules() if id(m) in ran
                      for p in m.parameters(recurse=False))
    return MacCounts(convfc=convfc, all=everything, by_kind=by_kind, by_op=by_op,
                     params_used=params_used)
