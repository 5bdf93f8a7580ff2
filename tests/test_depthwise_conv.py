"""The depthwise conv's fast CPU backward computes what nn.Conv2d computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from nasctl.nets.depthwise import DepthwiseConv2d


def _conv(kernel: int, stride: int, dilation: int) -> DepthwiseConv2d:
    return DepthwiseConv2d(6, 6, kernel, stride=stride, padding=dilation * (kernel - 1) // 2,
                           dilation=dilation, groups=6, bias=False).double()


def _grads(y: torch.Tensor, inputs: tuple[torch.Tensor, ...],
           grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(y, inputs, grad)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [8, 7])
def test_values_and_gradients_equal_the_plain_conv(kernel, stride, dilation, channels_last,
                                                  size) -> None:
    torch.manual_seed(0)
    conv = _conv(kernel, stride, dilation)
    x = torch.randn(3, 6, size, size + 2, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = conv(x)
    grad = torch.randn_like(y)
    got = _grads(y, (x, conv.weight), grad)
    ref_y = F.conv2d(x, conv.weight, stride=stride, padding=conv.padding, dilation=dilation,
                     groups=6)
    ref = _grads(ref_y, (x, conv.weight), grad)
    torch.testing.assert_close(y, ref_y, rtol=0, atol=1e-12)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dilation", [1, 2])
def test_gradient_of_the_input_alone_and_of_the_weight_alone(dilation) -> None:
    conv = _conv(5, 1, dilation)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)

    def ref(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, conv.weight, padding=conv.padding, dilation=dilation,
                        groups=6).square().sum()

    conv.weight.requires_grad_(False)  # the search's architecture step
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(conv(xg).square().sum(), xg)[0],
                               torch.autograd.grad(ref(xg), xg)[0])
    conv.weight.requires_grad_(True)  # a first layer: no input gradient
    torch.testing.assert_close(torch.autograd.grad(conv(x).square().sum(), conv.weight)[0],
                               torch.autograd.grad(ref(x), conv.weight)[0])


def test_only_cpu_training_with_gradients_takes_the_fast_form() -> None:
    conv = _conv(3, 1, 2)
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64, requires_grad=True)
    assert conv(x).grad_fn.name() == "_SameDepthwiseConvBackward"
    with torch.no_grad():
        assert conv(x).grad_fn is None
    assert conv.eval()(x).grad_fn.name() == "ConvolutionBackward0"
    conv.train()
    assert conv(x.detach().to("meta").requires_grad_()).grad_fn.name() == "ConvolutionBackward0"
    conv.fast_backward = False
    assert conv(x).grad_fn.name() == "ConvolutionBackward0"
    # same parameters and state_dict keys as nn.Conv2d: official checkpoints still load
    assert list(conv.state_dict()) == ["weight"]


def test_cpu_autocast_runs_pytorchs_conv() -> None:
    """Under autocast the output and its gradient are bf16 while the weight stays fp32:
    PyTorch's conv handles that, the fast forms would not."""
    conv = DepthwiseConv2d(6, 6, 3, padding=2, dilation=2, groups=6, bias=False)
    x = torch.randn(1, 6, 8, 8, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        y = conv(x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16 and y.grad_fn.name() != "_SameDepthwiseConvBackward"
    assert x.grad is not None and conv.weight.grad is not None


def test_a_strided_incoming_gradient() -> None:
    conv = _conv(3, 1, 2)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(2, 12, 8, 8, dtype=torch.float64)[:, 3:9]  # a channel slice
    got = torch.autograd.grad(conv(x), (x, conv.weight), grad)
    ref = torch.autograd.grad(F.conv2d(x, conv.weight, padding=2, dilation=2, groups=6),
                              (x, conv.weight), grad)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
