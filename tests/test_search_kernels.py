"""The search path's recomputed BatchNorm equals the plain one, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nasctl.nets.depthwise import DepthwiseConv2d
from nasctl.search.kernels import (
    BNInput,
    avg_pool_vjp,
    batch_norm_recomputed,
    chain,
    conv_vjp,
    max_pool_input,
    max_pool_no_indices,
)
from nasctl.search.plan import _reduce, _reduce_vjp


def _conv1x1(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w)


_MAX_POOL = nn.MaxPool2d(3, 2, 1)
_MAX_POOL_S1 = nn.MaxPool2d(3, 1, 1)  # computed as two 1-D maxima
_AVG_POOL = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
_DEPTHWISE = DepthwiseConv2d(4, 4, 5, padding=4, dilation=2, groups=4, bias=False)


def _sep_block(x: torch.Tensor, wd: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    return _conv1x1(_DEPTHWISE.conv(x, wd), w1)


# name: (fn, parameter shapes, the same stage's explicit vjps; max pooling: max_pool_input)
CASES = {
    "conv1x1": (_conv1x1, [(6, 4, 1, 1)], [conv_vjp(nn.Conv2d(4, 6, 1, bias=False))]),
    "factorized_reduce": (_reduce, [(3, 4, 1, 1), (3, 4, 1, 1)], [_reduce_vjp]),
    "max_pool": (_MAX_POOL, [], [None]),
    "max_pool_s1": (_MAX_POOL_S1, [], [None]),
    "avg_pool": (_AVG_POOL, [], [avg_pool_vjp(_AVG_POOL)]),
    "dil_conv_chain": (_sep_block, [(4, 1, 5, 5), (6, 4, 1, 1)],
                       [_DEPTHWISE.conv_vjp, conv_vjp(nn.Conv2d(4, 6, 1, bias=False))]),
}


def _explicit(case: str, params: tuple[nn.Parameter, ...]) -> BNInput:
    """The case as :class:`BNInput` steps with vjps (the search plan's form)."""
    fn, shapes, vjps = CASES[case]
    if case.startswith("max_pool"):
        return max_pool_input(fn)
    fns = {"dil_conv_chain": [_DEPTHWISE.conv, _conv1x1]}.get(case, [fn])
    if len(fns) == 1:
        return BNInput(fns[0], params, vjps[0])
    return chain([BNInput(f, (p,), v) for f, p, v in zip(fns, params, vjps, strict=True)])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("explicit", [False, True])
def test_recomputed_batch_norm_equals_plain(case: str, affine: bool, channels_last: bool,
                                            explicit: bool) -> None:
    """Autograd's backward of the stages and their explicit vjps give the same values."""
    torch.manual_seed(0)
    fn, shapes, _ = CASES[case]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, 8, 8).contiguous(memory_format=fmt).requires_grad_()
    params = tuple(nn.Parameter(torch.randn(s)) for s in shapes)
    channels = fn(x, *params).shape[1]
    weight = torch.rand(channels, requires_grad=True) if affine else None
    grad = torch.randn(3, channels, *fn(x, *params).shape[2:])
    leaves = [t for t in (x, weight, *params) if t is not None]

    ref = F.batch_norm(fn(x, *params), None, None, weight, None, True, 0.0, 1e-5)
    ref_grads = torch.autograd.grad(ref, leaves, grad)
    pre = _explicit(case, params) if explicit else BNInput(fn, params)
    got = batch_norm_recomputed(pre, x, weight, 1e-5)
    got_grads = torch.autograd.grad(got, leaves, grad)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for a, b in zip(ref_grads, got_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_recomputed_batch_norm_keeps_only_the_producer_input() -> None:
    """What backward keeps: the conv's input and the BN's statistics, not the conv's
    output (the point of the kernel)."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = nn.Parameter(torch.randn(4, 4, 1, 1))
    kept: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        batch_norm_recomputed(BNInput(_conv1x1, (w,)), x, None, 1e-5)
    assert [tuple(t.shape) for t in kept] == [(2, 4, 8, 8), (4,), (4,), (4, 4, 1, 1)]
    assert kept[0] is x


def test_only_requested_gradients_are_computed() -> None:
    """The architecture step freezes the weights: no weight gradient, the input's still."""
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 4, 1, 1)  # frozen
    scale = torch.rand(4, requires_grad=True)
    out = batch_norm_recomputed(BNInput(_conv1x1, (w,)), x, scale, 1e-5)
    gx, gs = torch.autograd.grad(out.square().sum(), [x, scale])
    ref = F.batch_norm(_conv1x1(x, w), None, None, scale, None, True, 0.0, 1e-5)
    rx, rs = torch.autograd.grad(ref.square().sum(), [x, scale])
    torch.testing.assert_close(gx, rx, rtol=0, atol=0)
    torch.testing.assert_close(gs, rs, rtol=0, atol=0)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_without_indices_equals_max_pool(stride: int) -> None:
    pool = nn.MaxPool2d(3, stride, 1)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    grad = torch.randn_like(pool(x))
    ref = torch.autograd.grad(pool(x), x, grad)[0]
    got_out = max_pool_no_indices(x, pool)
    torch.testing.assert_close(got_out, pool(x), rtol=0, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got_out, x, grad)[0], ref, rtol=0, atol=0)
