"""The DARTS cell supernet (search network): every edge is a weighted mixture of all
candidate ops.

Structure and module names follow the official DARTS/FairDARTS ``model_search.py``
(``cells.{i}._ops.{edge}._ops.{k}``), with every BatchNorm non-affine and a non-affine BN
after each pooling op. Two forward paths compute the same function
``node = sum_edges sum_ops w_o * o(x)`` on the same modules:

- ``naive``: the straightforward per-edge, per-op loop of the official code (the reference
  the benchmark and tests compare against);
- ``fast`` (default): each node's ReLU is computed once and shared by every op on its
  out-edges that starts with a ReLU (sep/dil convs, FactorizedReduce), ``none`` ops are
  skipped (they add zero), an op's mixture weight becomes the affine weight of its
  trailing non-affine BN (no multiply, no saved BN output), the gradient a node gets from
  the cell's concatenation is made dense once, max pooling keeps no argmax indices, and
  references are dropped as soon as a node is no longer read. ``recompute`` trades time
  for memory, with exactly the same values: ``off`` recomputes nothing; ``convs`` keeps
  the inputs of each op's ReLU-conv-BN blocks and pools instead of their intermediate
  results and runs the convs and pools again in backward (``chain`` in
  :mod:`nasctl.search.plan`); ``full-res`` also makes each edge of the cells that read
  full-resolution inputs, up to and including the first reduction cell (about 60% of the
  activations), a checkpoint region that keeps only the edge's inputs and recomputes the
  edge in backward; ``all`` checkpoints every edge.

Every BatchNorm uses batch statistics in every mode (no running statistics), as the
search network only ever trains; ``none`` ops are never computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.checkpoint import checkpoint

from nasctl.device import memory_format_of
from nasctl.nets.ops import POOL_OPS, FactorizedReduce, ReLUConvBN, make_op
from nasctl.search.kernels import batch_norm_recomputed
from nasctl.search.plan import (
    BN_RECOMPUTE_LEVELS,
    BNRecompute,
    PlanEntry,
    compile_stages,
    flatten,
    plan_entry,
)

Impl = Literal["fast", "naive"]
Recompute = Literal["off", "convs", "full-res", "all"]
ProbeRecorder = Callable[[int, dict[tuple[int, int], torch.Tensor], torch.Tensor, torch.Tensor],
                         None]
NodeNorm = Literal["none", "bn", "rms"]
NUM_INPUTS = 2


def edge_list(num_nodes: int) -> list[tuple[int, int]]:
    """``(from_node, to_node)`` for every edge, in the row order of the alpha matrices."""
    return [(j, i + NUM_INPUTS) for i in range(num_nodes) for j in range(i + NUM_INPUTS)]


class RMSNorm2d(nn.Module):
    """Scale each sample's feature map to unit root-mean-square (no parameters)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=(1, 2, 3), keepdim=True) + self.eps)


def make_node_norm(kind: NodeNorm, channels: int) -> nn.Module | None:
    if kind == "none":
        return None
    if kind == "bn":
        return nn.BatchNorm2d(channels, affine=False)
    if kind == "rms":
        return RMSNorm2d()
    raise ValueError(f"unknown node normalization {kind!r} (none, bn, rms)")


class MixedOp(nn.Module):
    """All candidate ops of one edge (pools followed by a non-affine BN, as in DARTS)."""

    def __init__(self, ops: Sequence[str], channels: int, stride: int) -> None:
        super().__init__()
        self.op_names = tuple(ops)
        self._ops = nn.ModuleList()
        for name in ops:
            op = make_op(name, channels, stride, affine=False)
            if name in POOL_OPS:
                op = nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
            self._ops.append(op)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self._ops, strict=True))  # type: ignore[return-value]


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward hands on a dense copy of the gradient. A node's gradient
    from the cell's concatenation is a channel slice, and BatchNorm's CPU backward on such
    a strided gradient is 4x slower: one copy per node is cheaper than that in every op."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.memory_format = memory_format_of(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.memory_format)


class SearchCell(nn.Module):
    def __init__(self, ops: Sequence[str], num_nodes: int, multiplier: int, c_prev_prev: int,
                 c_prev: int, c: int, reduction: bool, reduction_prev: bool,
                 node_norm: NodeNorm = "none") -> None:
        super().__init__()
        self.reduction = reduction
        self.num_nodes = num_nodes
        self.multiplier = multiplier
        self.recompute = False  # checkpoint every edge (keep only its inputs)
        self.bn_recompute: BNRecompute = "none"  # BN inputs recomputed in the other edges
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = edge_list(num_nodes)
        self._ops = nn.ModuleList(
            MixedOp(ops, c, 2 if reduction and src < NUM_INPUTS else 1) for src, _ in self.edges
        )
        norms = [make_node_norm(node_norm, c) for _ in range(num_nodes)]
        self.node_norms = nn.ModuleList(n for n in norms if n is not None) if norms[0] else None
        self.op_names = tuple(ops)
        self._build_plan(ops)

    # The fast-path plan (``_plan``, ``_pre``) holds closures over this cell's op modules.
    # copy.deepcopy and pickle would carry those closures over unchanged, so a copy would
    # run (and train) the original's modules: the plan is left out of the state and rebuilt
    # from the copy's own modules instead.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_plan", None)
        state.pop("_pre", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._build_plan(self.op_names)

    def _build_plan(self, ops: Sequence[str]) -> None:
        """Precompute the fast path once: per edge, its ops as :class:`_PlanEntry`."""
        self._plan: list[list[PlanEntry]] = []
        self._relu_users = [False] * (NUM_INPUTS + self.num_nodes)
        for e, (src, _dst) in enumerate(self.edges):
            entries = [plan_entry(k, op) for k, (name, op) in
                       enumerate(zip(ops, self._ops[e]._ops, strict=True))
                       if name != "none"]  # none adds w * 0: nothing to compute, no gradient
            self._relu_users[src] |= any(entry.uses_relu for entry in entries)
            self._plan.append(entries)
        self._pre = [{level: compile_stages(flatten(p), level) for level in BN_RECOMPUTE_LEVELS}
                     for p in (self.preprocess0, self.preprocess1)]
        self._last_read = [max((e for e, (s, _) in enumerate(self.edges) if s == n), default=-1)
                           for n in range(NUM_INPUTS + self.num_nodes)]

    def _edge(self, e: int, x: torch.Tensor, relu_x: torch.Tensor | None, w: torch.Tensor,
              level: BNRecompute) -> torch.Tensor:
        """``sum_k w[k] * op_k(x)``. A trailing non-affine BN computes ``w[k] * BN(z)`` as
        BN(z) with affine weight w[k]: no separate multiply, and neither step saves the BN's
        output (its backward rebuilds it from the input it keeps anyway). ``level`` says which
        BN inputs are recomputed in backward instead of kept (see :mod:`.plan`)."""
        total: torch.Tensor | None = None
        scales: torch.Tensor | None = None  # w as per-channel BN weights (contiguous: fast)
        for entry in self._plan[e]:
            body, tail = entry.paths[level]
            z = body(relu_x if entry.uses_relu else x)  # type: ignore[arg-type]
            bn = entry.final_bn
            if bn is None:
                y = z * w[entry.op_index]
            else:
                if scales is None:
                    scales = w.unsqueeze(1).expand(-1, bn.num_features).contiguous()
                if tail is None:
                    y = F.batch_norm(z, None, None, scales[entry.op_index], None, True, 0.0,
                                     bn.eps)
                else:
                    y = batch_norm_recomputed(tail, z, scales[entry.op_index], bn.eps)
            total = y if total is None else total.add_(y)
        assert total is not None
        return total

    def forward_probe(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                      record: ProbeRecorder) -> torch.Tensor:
        """Forward that hands every node's op outputs to ``record(node, outputs, total,
        normalized)``; ``outputs`` maps (edge index, op index) to that op's output (``none``
        left out), ``total`` is the node's weighted sum and ``normalized`` the node as the
        cell passes it on (after node normalization; ``total`` itself without one)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for i in range(self.num_nodes):
            dst = NUM_INPUTS + i
            outputs: dict[tuple[int, int], torch.Tensor] = {}
            total: torch.Tensor | None = None
            for src in range(dst):
                relu_x = F.relu(states[src])
                for entry in self._plan[e]:
                    k = entry.op_index
                    y = entry.paths["none"].body(relu_x if entry.uses_relu else states[src])
                    if entry.final_bn is not None:
                        y = entry.final_bn(y)
                    outputs[(e, k)] = y
                    total = y * weights[e, k] if total is None else total + y * weights[e, k]
                e += 1
            assert total is not None
            states.append(self._normalize(i, total))
            record(dst, outputs, total, states[-1])
        return torch.cat(states[-self.multiplier:], dim=1)

    def _normalize(self, i: int, node: torch.Tensor) -> torch.Tensor:
        return node if self.node_norms is None else self.node_norms[i](node)

    def forward_naive(self, s0: torch.Tensor, s1: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for i in range(self.num_nodes):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(self._normalize(i, s))  # type: ignore[arg-type]
        return torch.cat(states[-self.multiplier:], dim=1)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states: list[torch.Tensor | None] = [None] * (NUM_INPUTS + self.num_nodes)
        relus: list[torch.Tensor | None] = [None] * len(states)
        states[0] = self._pre[0][self.bn_recompute](s0)
        states[1] = self._pre[1][self.bn_recompute](s1)
        w_rows = weights.unbind(0)
        e = 0
        for i in range(self.num_nodes):
            dst = NUM_INPUTS + i
            total: torch.Tensor | None = None
            for src in range(dst):
                x = states[src]
                assert x is not None
                if self._relu_users[src] and relus[src] is None:
                    relus[src] = F.relu(x)
                if self.recompute and torch.is_grad_enabled():
                    y = checkpoint(self._edge, e, x, relus[src], w_rows[e], "none",
                                   use_reentrant=False)
                else:
                    y = self._edge(e, x, relus[src], w_rows[e], self.bn_recompute)
                total = y if total is None else total + y
                if self._last_read[src] == e:
                    relus[src] = None
                    if src < NUM_INPUTS + self.num_nodes - self.multiplier:
                        states[src] = None  # not concatenated: drop now
                e += 1
            assert total is not None
            states[dst] = self._normalize(i, total)
        return torch.cat([_DenseGrad.apply(s) for s in states[-self.multiplier:]], dim=1)


class SearchNetwork(nn.Module):
    """The DARTS search network: stem, ``layers`` search cells (reductions at layers//3 and
    2*layers//3), global pooling, classifier. Architecture parameters ``alpha_normal`` and
    ``alpha_reduce`` ([num_edges, num_ops], initialised to ``alpha_init``) are kept apart from
    the weights; ``activation`` turns them into mixture weights (softmax, sigmoid...).
    """

    def __init__(self, ops: Sequence[str], activation: Callable[[torch.Tensor], torch.Tensor],
                 channels: int = 16, layers: int = 8, num_nodes: int = 4, num_classes: int = 10,
                 stem_multiplier: int = 3, node_norm: NodeNorm = "none",
                 alpha_init: float = 1e-3, impl: Impl = "fast",
                 recompute: Recompute = "off") -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"a search network needs at least 3 cells, got {layers}")
        self.ops = tuple(ops)
        self.activation = activation
        self.num_nodes = num_nodes
        self.impl: Impl = impl
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = SearchCell(ops, num_nodes, num_nodes, c_prev_prev, c_prev, c_curr, reduction,
                              reduction_prev, node_norm)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, num_nodes * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        num_edges = len(edge_list(num_nodes))
        # Random init as in DARTS (1e-3 * randn); FairDARTS starts every alpha at 0.
        self.alpha_normal = nn.Parameter(alpha_init * torch.randn(num_edges, len(ops)))
        self.alpha_reduce = nn.Parameter(alpha_init * torch.randn(num_edges, len(ops)))
        if recompute not in get_args(Recompute):
            raise ValueError(f"recompute must be one of {', '.join(get_args(Recompute))}, "
                             f"got {recompute!r}")
        for i, cell in enumerate(self.cells):
            cell.recompute = recompute == "all" or (recompute == "full-res" and i <= layers // 3)
            cell.bn_recompute = "none" if recompute == "off" else "chain"
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                # Batch statistics in every mode: search-time evaluation and probing then
                # see the network exactly as training does, and recomputation is exact.
                m.track_running_stats = False
                m.running_mean = m.running_var = m.num_batches_tracked = None

    @property
    def edges(self) -> list[tuple[int, int]]:
        return edge_list(self.num_nodes)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha_normal, self.alpha_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixture weights the alphas currently give (normal, reduce)."""
        return self.activation(self.alpha_normal), self.activation(self.alpha_reduce)

    @torch.no_grad()
    def probe(self, x: torch.Tensor,
              record: Callable[[int, int, dict[tuple[int, int], torch.Tensor], torch.Tensor,
                                torch.Tensor], None]) -> torch.Tensor:
        """A no-grad forward calling ``record(cell index, node, op outputs, node sum,
        normalized node)`` (see :meth:`SearchCell.forward_probe`)."""
        w_normal, w_reduce = self.arch_weights()
        s0 = s1 = self.stem(x)
        for c, cell in enumerate(self.cells):
            w = w_reduce if cell.reduction else w_normal
            out = cell.forward_probe(s0, s1, w, lambda n, o, t, z, c=c: record(c, n, o, t, z))
            s0, s1 = s1, out
        return self.classifier(self.global_pooling(s1).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal, w_reduce = self.arch_weights()
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w = w_reduce if cell.reduction else w_normal
            out = cell.forward_naive(s0, s1, w) if self.impl == "naive" else cell(s0, s1, w)
            s0, s1 = s1, out
        return self.classifier(self.global_pooling(s1).flatten(1))
