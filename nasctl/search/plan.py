"""The supernet's fast path, op by op: each candidate op as the stages it runs, with the
BatchNorms whose inputs are recomputed in backward instead of kept.

Every BN in a search cell is non-affine with batch statistics and follows a conv or a
pool, so what autograd keeps for backward is mostly BN inputs (1x1-conv and pool outputs)
and 1x1-conv inputs (depthwise-conv outputs). :func:`batch_norm_recomputed` keeps the
input of the stages before a BN instead and runs them again in backward, at a level:

- ``none``: keep everything (for an edge that is recomputed as a whole anyway);
- ``producer``: recompute the BN's producer when it is a 1x1 conv, a 3x3 pool or
  FactorizedReduce's pair of strided 1x1 convs (cheap next to the memory they save);
- ``chain``: also the depthwise convs before that 1x1 conv, back to the ReLU that starts
  the block, so a sep/dil conv keeps only its ReLU outputs.

The recomputation runs the same kernels on the same inputs, so values and gradients are
exactly those of the plain path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, NamedTuple, cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nasctl.nets.depthwise import DepthwiseConv2d
from nasctl.nets.ops import Conv7x1x1x7, DilConv, FactorizedReduce, ReLUConvBN, SepConv
from nasctl.search.kernels import (
    BNInput,
    Grads,
    avg_pool_vjp,
    batch_norm_recomputed,
    chain,
    conv_vjp,
    max_pool_input,
)

BNRecompute = Literal["none", "producer", "chain"]
BN_RECOMPUTE_LEVELS: tuple[BNRecompute, ...] = ("none", "producer", "chain")
Stage = nn.Module | BNInput


def flatten(op: nn.Module) -> list[Stage]:
    """The op as the sequence of stages it runs (the same modules, no copy)."""
    if isinstance(op, SepConv | DilConv | ReLUConvBN | Conv7x1x1x7):
        op = cast(nn.Sequential, op.op)
    if isinstance(op, nn.Sequential):
        return [stage for m in op for stage in flatten(m)]
    if isinstance(op, FactorizedReduce):
        return [op.relu, BNInput(_reduce, (op.conv_1.weight, op.conv_2.weight), _reduce_vjp),
                op.bn]
    if isinstance(op, nn.MaxPool2d) and op.dilation == 1 and not op.ceil_mode:
        return [max_pool_input(op)]
    return [op]


def _reduce(r: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """FactorizedReduce's convs (after its ReLU, before its BN)."""
    return torch.cat([F.conv2d(r, w1, stride=2), F.conv2d(r[:, :, 1:, 1:], w2, stride=2)], dim=1)


def _reduce_vjp(r: torch.Tensor, grad: torch.Tensor, params: Sequence[torch.Tensor],
                needs: Sequence[bool], saved: Any = None) -> Grads:
    w1, w2 = params
    g1, g2 = grad.split([w1.shape[0], w2.shape[0]], dim=1)
    gr1, gw1, _ = torch.ops.aten.convolution_backward(
        g1, r, w1, None, [2, 2], [0, 0], [1, 1], False, [0, 0], 1, [needs[0], needs[1], False])
    gr2, gw2, _ = torch.ops.aten.convolution_backward(
        g2, r[:, :, 1:, 1:], w2, None, [2, 2], [0, 0], [1, 1], False, [0, 0], 1,
        [needs[0], needs[2], False])
    if gr1 is not None:
        gr1[:, :, 1:, 1:] += gr2
    return gr1, gw1, gw2


def _is_conv(stage: Stage) -> bool:
    return (isinstance(stage, nn.Conv2d) and stage.bias is None
            and stage.padding_mode == "zeros")


def _is_producer(stage: Stage) -> bool:
    """A cheap stage to run again: a pool, a 1x1 conv, FactorizedReduce's convs."""
    return (isinstance(stage, BNInput | nn.MaxPool2d | nn.AvgPool2d)
            or (_is_conv(stage) and cast(nn.Conv2d, stage).kernel_size == (1, 1)
                and cast(nn.Conv2d, stage).groups == 1))


def _is_depthwise(stage: Stage) -> bool:
    return (_is_conv(stage) and cast(nn.Conv2d, stage).groups
            == cast(nn.Conv2d, stage).in_channels == cast(nn.Conv2d, stage).out_channels)


def _as_input(stage: Stage) -> BNInput:
    if isinstance(stage, BNInput):
        return stage
    if isinstance(stage, DepthwiseConv2d):
        return BNInput(stage.conv, (stage.weight,), stage.conv_vjp)
    if isinstance(stage, nn.Conv2d):
        conv = stage
        return BNInput(lambda x, w: conv._conv_forward(x, w, None), (conv.weight,),
                       conv_vjp(conv))
    if isinstance(stage, nn.AvgPool2d):
        return BNInput(stage, (), avg_pool_vjp(stage))
    return BNInput(stage, ())  # another pool: differentiated by autograd


def _chain(stages: Sequence[Stage]) -> BNInput:
    return chain([_as_input(s) for s in stages])


def _recomputed_tail(stages: Sequence[Stage], level: BNRecompute) -> int:
    """How many of the last stages (those before a BN) ``level`` recomputes."""
    if level == "none" or not stages or not _is_producer(stages[-1]):
        return 0
    n = 1
    while level == "chain" and n < len(stages) and _is_depthwise(stages[-1 - n]):
        n += 1
    return n


def _is_plain_bn(stage: Stage) -> bool:
    return isinstance(stage, nn.BatchNorm2d) and not stage.affine


def compile_stages(stages: Sequence[Stage],
                   level: BNRecompute) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stages as one function, each non-affine BN with its inputs recomputed at
    ``level``."""
    calls: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for stage in stages:
        n = _recomputed_tail(calls, level) if _is_plain_bn(stage) else 0  # type: ignore[arg-type]
        if n:
            tail = _chain(calls[-n:])  # type: ignore[arg-type]
            del calls[-n:]
            calls.append(partial(batch_norm_recomputed, tail, weight=None,
                                 eps=cast(nn.BatchNorm2d, stage).eps))
        else:
            calls.append(stage)

    def run(x: torch.Tensor) -> torch.Tensor:
        for call in calls:
            x = call(x)
        return x

    return run


class OpPath(NamedTuple):
    """An op at one level: ``body``, then (when the op ends in a non-affine BN) ``tail``
    recomputed by that BN, or the BN on ``body``'s output when ``tail`` is None."""

    body: Callable[[torch.Tensor], torch.Tensor]
    tail: BNInput | None


class PlanEntry(NamedTuple):
    """One op of the fast path. ``w * op(x)`` is its path's ``body`` applied to the node's
    shared ReLU (``uses_relu``) or to the node itself, then ``final_bn`` with ``w`` as its
    affine weight, or a multiplication by ``w`` when the op does not end in a non-affine BN.
    """

    op_index: int
    uses_relu: bool  # the op starts with a ReLU: it reads the node's shared ReLU
    final_bn: nn.BatchNorm2d | None  # a trailing non-affine BN takes w as its affine weight
    paths: dict[BNRecompute, OpPath]


def plan_entry(k: int, op: nn.Module) -> PlanEntry:
    stages = flatten(op)
    uses_relu = isinstance(stages[0], nn.ReLU)
    if uses_relu:
        stages = stages[1:]
    final_bn = cast(nn.BatchNorm2d, stages[-1]) if _is_plain_bn(stages[-1]) else None
    if final_bn is not None:
        stages = stages[:-1]
    paths = {}
    for level in BN_RECOMPUTE_LEVELS:
        n = _recomputed_tail(stages, level) if final_bn is not None else 0
        head = stages[:len(stages) - n]
        paths[level] = OpPath(compile_stages(head, level), _chain(stages[-n:]) if n else None)
    return PlanEntry(k, uses_relu, final_bn, paths)
