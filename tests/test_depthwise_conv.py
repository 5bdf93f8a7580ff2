"""The phase-split dilated depthwise conv computes exactly what nn.Conv2d computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from nasctl.nets.dilated import DilatedDepthwiseConv2d


def _conv(kernel: int, stride: int) -> DilatedDepthwiseConv2d:
    return DilatedDepthwiseConv2d(6, 6, kernel, stride=stride, padding=kernel - 1, dilation=2,
                                  groups=6, bias=False).double()


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [8, 7])
def test_phase_form_equals_the_dilated_conv(kernel, stride, channels_last, size) -> None:
    torch.manual_seed(0)
    conv = _conv(kernel, stride)
    x = torch.randn(3, 6, size, size + 2, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    # odd sizes only have equal phases under stride 2; otherwise the plain conv runs
    assert conv._use_phases(x) == (stride == 2 or size % 2 == 0)
    y = conv(x)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, conv.weight), grad)
    ref_y = F.conv2d(x, conv.weight, stride=stride, padding=kernel - 1, dilation=2, groups=6)
    ref = torch.autograd.grad(ref_y, (x, conv.weight), grad)
    torch.testing.assert_close(y, ref_y, rtol=0, atol=1e-12)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last or size % 2


def test_gradient_of_the_input_alone_and_of_the_weight_alone() -> None:
    conv = _conv(5, 1)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)

    def ref(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, conv.weight, padding=4, dilation=2, groups=6).square().sum()

    conv.weight.requires_grad_(False)  # the search's architecture step
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(conv(xg).square().sum(), xg)[0],
                               torch.autograd.grad(ref(xg), xg)[0])
    conv.weight.requires_grad_(True)  # a first layer: no input gradient
    torch.testing.assert_close(torch.autograd.grad(conv(x).square().sum(), conv.weight)[0],
                               torch.autograd.grad(ref(x), conv.weight)[0])


def test_inference_export_and_counting_see_a_plain_dilated_conv() -> None:
    conv = _conv(3, 1)
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    assert conv._use_phases(x)
    with torch.no_grad():
        assert not conv._use_phases(x)
    assert not conv.eval()._use_phases(x)
    conv.train()
    assert not conv._use_phases(x.detach().to("meta"))
    conv.phase_split = False
    assert not conv._use_phases(x)
    # same parameters and state_dict keys as nn.Conv2d: official checkpoints still load
    assert list(conv.state_dict()) == ["weight"]


def test_a_strided_incoming_gradient() -> None:
    conv = _conv(3, 1)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(2, 12, 8, 8, dtype=torch.float64)[:, 3:9]  # a channel slice
    got = torch.autograd.grad(conv(x), (x, conv.weight), grad)
    ref = torch.autograd.grad(F.conv2d(x, conv.weight, padding=2, dilation=2, groups=6),
                              (x, conv.weight), grad)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
