"""The mbconv chain network (:mod:`nasctl.nets.mbconv`) as units, at deployment settings:
the stem, one unit per MBConv layer (its shortcut add included; ``skip`` is free) and the
head (1x1 feature mix, pooling, classifier)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasctl.errors import GenotypeError
from nasctl.genotypes.chain import CHAIN_CELL, MBCONV_CHAIN, SKIP, chain_layers, mbconv_op
from nasctl.nets.mbconv import (
    ChainLayout,
    MBConvBlock,
    build_mbconv_network,
    conv_bn,
    searchable_slots,
)
from nasctl.nets.units import GroupUnits, Unit, distinct, run_unit

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def layer_unit(op: str, c_in: int, c_out: int, stride: int, size: int) -> Unit | None:
    """One chain layer on a ``c_in`` x ``size`` x ``size`` input (None for ``skip``)."""
    if op == SKIP:
        return None
    kernel, expansion = (int(p[1:]) for p in op.split("_")[1:])

    def build() -> nn.Module:
        return MBConvBlock(op, c_in, c_out, stride, kernel, expansion).eval()

    return Unit(f"{op} c{c_in}->c{c_out} {size}x{size} s{stride}", ((c_in, size, size),), build)


class _Head(nn.Module):
    def __init__(self, c_in: int, head: int, num_classes: int) -> None:
        super().__init__()
        self.feature_mix_layer = conv_bn(c_in, head, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(OrderedDict([("linear", nn.Linear(head, num_classes))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.feature_mix_layer(x)).flatten(1))


class ChainDeployment:
    """The mbconv chain of ``layout`` at ``resolution`` with ``num_classes`` outputs."""

    def __init__(self, layout: ChainLayout, resolution: int = 224, num_classes: int = 1000,
                 kernels: Sequence[int] = (3, 5, 7), expansions: Sequence[int] = (3, 6),
                 dataset: str = "imagenet") -> None:
        from nasctl.search.mbconv import layer_choices

        self.layout = layout
        self.resolution = resolution
        self.num_classes = num_classes
        self.input_shape = (3, resolution, resolution)
        self.settings: dict[str, Any] = {
            "space": "mbconv", "dataset": dataset, "layout": asdict(layout),
            "input_size": resolution, "num_classes": num_classes,
            "kernels": list(kernels), "expansions": list(expansions)}
        size = _out(resolution, 2)
        first = layer_unit(mbconv_op(3, 1), layout.stem, layout.first, 1, size)
        assert first is not None
        self._stem = Unit(f"first_conv c3->c{layout.stem} {resolution}x{resolution} s2",
                          ((3, resolution, resolution),),
                          lambda: conv_bn(3, layout.stem, 3, stride=2).eval())
        self.groups: list[GroupUnits] = []
        for i, slot in enumerate(searchable_slots(layout)):
            choices = tuple(layer_choices(slot, kernels, expansions))
            units = tuple(
                () if (u := layer_unit(op, slot.in_channels, slot.out_channels, slot.stride,
                                       size)) is None else (u,)
                for op in choices)
            self.groups.append(GroupUnits(f"layer {i + 1}", choices, units))
            size = _out(size, slot.stride)
        last = searchable_slots(layout)[-1].out_channels if self.groups else layout.first
        self.fixed = [run_unit(self.input_shape), self._stem, first, self._head(last, size)]

    def _head(self, c_in: int, size: int) -> Unit:
        head, classes = self.layout.head, self.num_classes
        return Unit(f"head c{c_in}->c{head} {size}x{size} ->{classes}", ((c_in, size, size),),
                    lambda: _Head(c_in, head, classes).eval())

    def units(self, genotype: Genotype) -> list[Unit]:
        if genotype.search_space != MBCONV_CHAIN:
            raise GenotypeError(f"expected a {MBCONV_CHAIN} genotype, got "
                                f"{genotype.search_space!r}")
        chain = genotype.cells[CHAIN_CELL]
        size = _out(self.resolution, 2)
        stem = chain.graph["stem_channels"]
        res = self.resolution
        out = [run_unit(self.input_shape),
               Unit(f"first_conv c3->c{stem} {res}x{res} s2", self._stem.input_shapes,
                    lambda: conv_bn(3, stem, 3, stride=2).eval())]
        layers = chain_layers(chain)
        for layer in layers:
            unit = layer_unit(layer["op"], layer["in_channels"], layer["out_channels"],
                              layer["stride"], size)
            if unit is not None:
                out.append(unit)
            size = _out(size, layer["stride"])
        out.append(self._head(layers[-1]["out_channels"], size))
        return out

    def catalogue(self) -> list[Unit]:
        return distinct([*self.fixed, *(u for g in self.groups for c in g.units for u in c)])

    def network(self, genotype: Genotype) -> nn.Module:
        return build_mbconv_network(genotype, self.num_classes).eval()
