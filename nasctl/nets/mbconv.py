"""The final network of the ``mbconv-chain`` space (FairDARTS's ImageNet space, the
ProxylessNAS mobile layout): stem conv, a chain of MBConv layers, 1x1 head conv, global
pooling, classifier.

Module names follow the ProxylessNAS authors' ``ProxylessNASNets`` (``first_conv``,
``blocks.{i}.mobile_inverted_conv.{inverted_bottleneck,depth_conv,point_linear}``,
``feature_mix_layer``, ``classifier.linear``), so their released state_dicts map onto ours
key for key. Activations are ReLU6 and BatchNorm eps 1e-3, as there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import networkx as nx
import torch
from torch import nn

from nasctl.errors import GenotypeError
from nasctl.genotypes import Genotype
from nasctl.genotypes.chain import (
    CHAIN_CELL,
    MBCONV_CHAIN,
    SKIP,
    chain_layers,
    make_chain,
    mbconv_op,
)
from nasctl.nets.ops import drop_path

BN_EPS = 1e-3


@dataclass(frozen=True)
class ChainLayout:
    """A fixed chain: stem width, the first (expansion-1, 3x3) layer's width, then stages of
    ``(width, depth, first stride)``, then the head width."""

    stem: int
    first: int
    stages: tuple[tuple[int, int, int], ...]
    head: int


# ProxylessNAS's search layout (the authors' search script defaults), which FairDARTS
# used for its ImageNet models.
PROXYLESS_S2 = ChainLayout(
    stem=32, first=16,
    stages=((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)),
    head=1280,
)


@dataclass(frozen=True)
class LayerSlot:
    """One layer position of a layout: its shape, and whether skip is allowed there."""

    in_channels: int
    out_channels: int
    stride: int

    @property
    def allows_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of ``divisor`` (MobileNetV2's rule: never more
    than 10% below the unrounded value)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def scaled(layout: ChainLayout, width_mult: float = 1.0, divisor: int = 8) -> ChainLayout:
    """The layout with every width scaled (the head keeps its width unless scaled up, as in
    ProxylessNAS). ``divisor`` 1 allows tiny test networks."""
    if width_mult == 1.0:
        return layout

    def w(c: int) -> int:
        return make_divisible(c * width_mult, divisor)

    head = w(layout.head) if width_mult > 1.0 or divisor == 1 else layout.head
    return ChainLayout(w(layout.stem), w(layout.first),
                       tuple((w(c), n, s) for c, n, s in layout.stages), head)


def searchable_slots(layout: ChainLayout) -> list[LayerSlot]:
    """The searchable layers (after the fixed first layer), in order."""
    slots, c_in = [], layout.first
    for width, depth, stride in layout.stages:
        for i in range(depth):
            slots.append(LayerSlot(c_in, width, stride if i == 0 else 1))
            c_in = width
    return slots


def chain_genotype(layout: ChainLayout, ops: list[str], name: str | None = None,
                   provenance: dict[str, object] | None = None) -> Genotype:
    """The chain genotype of ``layout`` with ``ops[i]`` at searchable layer i (the fixed
    first layer, ``mbconv_k3_e1``, comes first in the chain)."""
    slots = searchable_slots(layout)
    if len(ops) != len(slots):
        raise GenotypeError(f"the layout has {len(slots)} searchable layers, got {len(ops)} ops")
    layers = [{"op": mbconv_op(3, 1), "in_channels": layout.stem,
               "out_channels": layout.first, "stride": 1}]
    layers += [{"op": op, "in_channels": s.in_channels, "out_channels": s.out_channels,
                "stride": s.stride} for op, s in zip(ops, slots, strict=True)]
    chain = make_chain(layers, layout.stem, layout.head)
    return Genotype(cells={CHAIN_CELL: chain}, name=name, search_space=MBCONV_CHAIN,
                    provenance=dict(provenance or {}))


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             act: bool = True, affine: bool = True) -> nn.Sequential:
    layers: list[tuple[str, nn.Module]] = [
        ("conv", nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(c_out, eps=BN_EPS, affine=affine)),
    ]
    if act:
        layers.append(("act", nn.ReLU6(inplace=False)))
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Module):
    """Inverted residual body: 1x1 expand (absent at expansion 1), kxk depthwise (carries
    the stride), 1x1 linear projection. No shortcut here: the block adds it. The search
    network uses ``affine=False`` BatchNorms, as DARTS-family supernets do."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int,
                 affine: bool = True) -> None:
        super().__init__()
        mid = round(c_in * expansion)
        self.inverted_bottleneck = (
            conv_bn(c_in, mid, 1, affine=affine) if expansion != 1 else None
        )
        self.depth_conv = conv_bn(mid, mid, kernel, stride, groups=mid, affine=affine)
        self.point_linear = conv_bn(mid, c_out, 1, act=False, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


def mbconv_macs(c_in: int, c_out: int, kernel: int, expansion: int, stride: int,
                height: int, width: int) -> int:
    """Conv multiply-accumulates of one MBConv on an ``height`` x ``width`` input."""
    mid = round(c_in * expansion)
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    expand = height * width * c_in * mid if expansion != 1 else 0
    return expand + out_h * out_w * mid * (kernel * kernel + c_out)


def chain_macs(chain: nx.MultiDiGraph, resolution: int, num_classes: int) -> int:
    """Conv+FC MACs of a chain's network at ``resolution`` x ``resolution`` (what
    count_macs measures, computed from the shapes alone)."""
    size = (resolution - 1) // 2 + 1
    stem = chain.graph["stem_channels"]
    total = size * size * stem * 3 * 9
    for layer in chain_layers(chain):
        if layer["op"] != SKIP:
            total += mbconv_macs(layer["in_channels"], layer["out_channels"], layer["kernel"],
                                 layer["expansion"], layer["stride"], size, size)
        size = (size - 1) // layer["stride"] + 1
    head = chain.graph["head_channels"]
    last = chain_layers(chain)[-1]["out_channels"]
    return total + size * size * last * head + head * num_classes


class MBConvBlock(nn.Module):
    """One chain layer: an MBConv (``mobile_inverted_conv``, None for skip) plus the identity
    shortcut wherever stride is 1 and the widths match. ``skip`` is the shortcut alone."""

    def __init__(self, op: str, c_in: int, c_out: int, stride: int, kernel: int | None,
                 expansion: int | None, affine: bool = True) -> None:
        super().__init__()
        self.op_name = op
        self.mobile_inverted_conv = (
            None if op == SKIP or kernel is None or expansion is None
            else MBConv(c_in, c_out, kernel, stride, expansion, affine)
        )
        self.has_shortcut = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        if self.mobile_inverted_conv is None:
            return x
        y = self.mobile_inverted_conv(x)
        if not self.has_shortcut:
            return y
        if self.training and drop_prob > 0.0:
            y = drop_path(y, drop_prob)
        return y + x


class MBConvNetwork(nn.Module):
    """Stem (3x3 stride 2), the chain's blocks, 1x1 head conv, global pooling, classifier.

    Returns logits. ``drop_path_prob`` drops the residual branch of shortcut blocks
    (stochastic depth); set it before a training epoch, as for the DARTS networks."""

    def __init__(self, chain: nx.MultiDiGraph, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers = chain_layers(chain)
        stem, head = chain.graph["stem_channels"], chain.graph["head_channels"]
        self.drop_path_prob = 0.0
        self.first_conv = conv_bn(3, stem, 3, stride=2)
        self.blocks = nn.ModuleList(
            MBConvBlock(layer["op"], layer["in_channels"], layer["out_channels"],
                        layer["stride"], layer["kernel"], layer["expansion"])
            for layer in layers
        )
        self.op_names = [layer["op"] for layer in layers]
        self.feature_mix_layer = conv_bn(layers[-1]["out_channels"], head, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.classifier = nn.Sequential(OrderedDict([("linear", nn.Linear(head, num_classes))]))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x, self.drop_path_prob)
        x = self.global_pooling(self.feature_mix_layer(x)).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)


def _init_weights(net: nn.Module) -> None:
    """ProxylessNAS's ``he_fout`` init for convs (the classifier keeps torch's default).
    Skipped on the meta device (shapes only; torch's meta ``normal_`` costs seconds)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))


def build_mbconv_network(genotype: Genotype, num_classes: int, drop_path: float = 0.0,
                         dropout: float = 0.0) -> MBConvNetwork:
    """The final network of a ``mbconv-chain`` genotype (its widths, strides and depth are
    all in the chain, so there is no C or layers to choose)."""
    if genotype.search_space != MBCONV_CHAIN:
        raise GenotypeError(f"expected a {MBCONV_CHAIN} genotype, got {genotype.search_space!r}")
    net = MBConvNetwork(genotype.cells[CHAIN_CELL], num_classes, dropout)
    net.drop_path_prob = drop_path
    return net
