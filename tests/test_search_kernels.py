"""The search path's recomputed BatchNorm equals the plain one, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nasctl.search.kernels import BNInput, batch_norm_recomputed, max_pool_no_indices


def _conv1x1(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w)


def _reduce(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.conv2d(x, w1, stride=2), F.conv2d(x[:, :, 1:, 1:], w2, stride=2)], 1)


CASES = {
    "conv1x1": (_conv1x1, [(6, 4, 1, 1)]),
    "factorized_reduce": (_reduce, [(3, 4, 1, 1), (3, 4, 1, 1)]),
    "max_pool": (nn.MaxPool2d(3, 2, 1), []),
    "avg_pool": (nn.AvgPool2d(3, 1, 1, count_include_pad=False), []),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_recomputed_batch_norm_equals_plain(case: str, affine: bool,
                                            channels_last: bool) -> None:
    torch.manual_seed(0)
    fn, shapes = CASES[case]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 4, 8, 8).contiguous(memory_format=fmt).requires_grad_()
    params = tuple(nn.Parameter(torch.randn(s)) for s in shapes)
    channels = sum(s[0] for s in shapes) or 4
    weight = torch.rand(channels, requires_grad=True) if affine else None
    grad = torch.randn(3, channels, *fn(x, *params).shape[2:])
    leaves = [t for t in (x, weight, *params) if t is not None]

    ref = F.batch_norm(fn(x, *params), None, None, weight, None, True, 0.0, 1e-5)
    ref_grads = torch.autograd.grad(ref, leaves, grad)
    got = batch_norm_recomputed(BNInput(fn, params), x, weight, 1e-5)
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
