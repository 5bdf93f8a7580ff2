"""The ``mbconv`` search space's supernet: FairDARTS's MobileNetV2-like ImageNet space.

A fixed chain (stem, an expansion-1 MBConv, then the searchable layers of a
:class:`~nasctl.nets.mbconv.ChainLayout`, head conv, classifier). Each searchable layer
mixes all its candidates, ``out = sum_c w_c * candidate_c(x)``, where a candidate is a
whole layer (an MBConv of kernel 3/5/7 and expansion 3/6, plus its identity shortcut where
the shape is kept) or ``skip`` (the identity, only where the shape is kept). ``w`` comes
from the method's activation of the layer's alphas (sigmoid for FairDARTS, softmax for
DARTS); FairDARTS's zero-one loss works unchanged on :meth:`arch_parameters`.

The default discretization keeps each layer's strongest candidate (skip where skip wins);
a method may bring its own rule (FairDARTS: the strongest candidate whose sigmoid reaches
the threshold). Registered as the ``mbconv`` space of the one search loop; each layer is
one exclusive choice group, which the costs (MACs, latency) price at the deployment
resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasctl.genotypes import Genotype
from nasctl.genotypes.chain import CHAIN_CELL, SKIP, mbconv_op, parse_op
from nasctl.nets.mbconv import (
    PROXYLESS_S2,
    ChainLayout,
    LayerSlot,
    MBConvBlock,
    chain_genotype,
    conv_bn,
    scaled,
    searchable_slots,
)
from nasctl.search.options import option
from nasctl.search.space import ChoiceGroup, Discretizer, SearchSpace, register
from nasctl.settings import Rule

if TYPE_CHECKING:
    from nasctl.nets.units import Deployment
    from nasctl.search.config import SearchConfig
    from nasctl.search.methods import SearchMethod

SEARCH_KERNELS: tuple[int, ...] = (3, 5, 7)
SEARCH_EXPANSIONS: tuple[int, ...] = (3, 6)


def layer_choices(slot: LayerSlot, kernels: Sequence[int] = SEARCH_KERNELS,
                  expansions: Sequence[int] = SEARCH_EXPANSIONS) -> list[str]:
    """The candidates of one layer: every kernel x expansion, plus skip where allowed."""
    ops = [mbconv_op(k, e) for k in kernels for e in expansions]
    return ops + [SKIP] if slot.allows_skip else ops


class MixedLayer(nn.Module):
    """All candidates of one searchable layer (non-affine BatchNorms)."""

    def __init__(self, slot: LayerSlot, choices: Sequence[str]) -> None:
        super().__init__()
        self.slot = slot
        self.op_names = list(choices)
        self._ops = nn.ModuleList()
        for op in choices:
            kernel, expansion = parse_op(op) or (None, None)
            self._ops.append(MBConvBlock(op, slot.in_channels, slot.out_channels, slot.stride,
                                         kernel, expansion, affine=False))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for w, op in zip(weights.unbind(0), self._ops, strict=True):
            y = op(x)
            total = y * w if total is None else torch.addcmul(total, y, w)
        assert total is not None
        return total


class MBConvSupernet(nn.Module):
    """The search network. ``activation`` maps one layer's alphas to mixture weights."""

    def __init__(self, layout: ChainLayout, activation: Callable[[torch.Tensor], torch.Tensor],
                 num_classes: int, alpha_init: float = 0.0,
                 kernels: Sequence[int] = SEARCH_KERNELS,
                 expansions: Sequence[int] = SEARCH_EXPANSIONS) -> None:
        super().__init__()
        self.layout = layout
        self.activation = activation
        self.num_classes = num_classes
        self.first_conv = conv_bn(3, layout.stem, 3, stride=2)
        self.first_block = MBConvBlock(mbconv_op(3, 1), layout.stem, layout.first, 1, 3, 1)
        self.slots = searchable_slots(layout)
        self.choices = [layer_choices(s, kernels, expansions) for s in self.slots]
        self.layers = nn.ModuleList(
            MixedLayer(s, c) for s, c in zip(self.slots, self.choices, strict=True)
        )
        last = self.slots[-1].out_channels if self.slots else layout.first
        self.feature_mix_layer = conv_bn(last, layout.head, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(layout.head, num_classes)
        self.alphas = nn.ParameterList(
            nn.Parameter(torch.full((len(c),), float(alpha_init))) for c in self.choices
        )

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        arch = {id(a) for a in self.alphas}
        return (p for p in self.parameters() if id(p) not in arch)

    def arch_weights(self) -> list[torch.Tensor]:
        return [self.activation(a) for a in self.alphas]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.first_conv(x))
        for layer, w in zip(self.layers, self.arch_weights(), strict=True):
            x = layer(x, w)
        x = self.global_pooling(self.feature_mix_layer(x)).flatten(1)
        return self.classifier(x)

    # --- discretization ---------------------------------------------------------------

    def strongest_ops(self) -> list[str]:
        """Each layer's candidate with the largest weight (ties: the earlier candidate)."""
        with torch.no_grad():
            return [choices[int(torch.argmax(w))]
                    for choices, w in zip(self.choices, self.arch_weights(), strict=True)]

    def discretize(self, name: str | None = None,
                   provenance: dict[str, object] | None = None) -> Genotype:
        return chain_genotype(self.layout, self.strongest_ops(), name, provenance)


LAYOUTS: dict[str, ChainLayout] = {"proxyless-s2": PROXYLESS_S2}


@dataclass(frozen=True)
class MBConvOptions:
    layout: str = option("proxyless-s2", "chain layout", Rule(choices=tuple(LAYOUTS)))
    width_mult: float = option(1.0, "width multiplier", Rule(low=0, high=8, open_low=True))
    deploy_resolution: int = option(224, "input size of the final network the costs price",
                                    Rule(low=8, high=2048), aliases=("--macs-resolution",))
    deploy_classes: int = option(1000, "classes of the final network the costs price",
                                 Rule(low=1, high=100_000))


@dataclass
class ChainChoice:
    """One candidate per searchable layer; ``fallback_layers`` are the layers where the
    rule kept nothing and the strongest candidate was taken instead."""

    ops: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fallback_layers: list[int] = field(default_factory=list)


def strongest_rule(model: MBConvSupernet, _probe: Any = None) -> ChainChoice:
    return ChainChoice(model.strongest_ops(), {"rule": "strongest candidate per layer"})


@register
class MBConvSpace(SearchSpace):
    name = "mbconv"
    help = "FairDARTS's MobileNetV2-like chain"
    Options = MBConvOptions

    @property
    def layout(self) -> ChainLayout:
        return scaled(LAYOUTS[self.config.layout], self.config.width_mult)

    def build(self, cfg: SearchConfig, method: SearchMethod, num_classes: int,
              device: torch.device) -> MBConvSupernet:
        return MBConvSupernet(self.layout, method.activation, num_classes,
                              alpha_init=method.alpha_init)

    def groups(self, model: MBConvSupernet) -> list[ChoiceGroup]:
        return [ChoiceGroup(f"layer {i + 1}", tuple(choices), w, exclusive=True)
                for i, (choices, w) in enumerate(zip(model.choices, model.arch_weights(),
                                                     strict=True))]

    def deployment(self, cfg: SearchConfig) -> Deployment:
        from nasctl.nets.chain_units import ChainDeployment

        return ChainDeployment(self.layout, self.config.deploy_resolution,
                               self.config.deploy_classes, SEARCH_KERNELS, SEARCH_EXPANSIONS)

    def kept(self, choice: ChainChoice) -> list[list[int]]:
        slots = searchable_slots(self.layout)
        return [[layer_choices(slot).index(op)] for slot, op in zip(slots, choice.ops,
                                                                     strict=True)]

    def with_kept(self, choice: ChainChoice | None, kept: list[list[int]],
                  model: MBConvSupernet) -> ChainChoice:
        ops = [model.choices[i][k[0]] for i, k in enumerate(kept)]
        return ChainChoice(ops) if choice is None else replace(choice, ops=ops)

    def cheapest(self, prices: list[list[float]]) -> list[list[int]]:
        return [[min(range(len(row)), key=row.__getitem__)] for row in prices]

    def arch_record(self, model: MBConvSupernet) -> dict[str, Any]:
        return {"layers": [g.weights.detach().cpu().tolist() for g in self.groups(model)]}

    def labels(self, model: MBConvSupernet) -> dict[str, Any]:
        return {"choices": model.choices}

    def default_discretizer(self, method: SearchMethod) -> Discretizer:
        return strongest_rule

    def fallback(self, choice: ChainChoice) -> list[str]:
        return [f"layer {i + 1}" for i in choice.fallback_layers]

    def choice_doc(self, choice: ChainChoice) -> list[str]:
        return list(choice.ops)

    def genotype(self, model: MBConvSupernet, choice: ChainChoice, cfg: SearchConfig,
                 name: str, provenance: dict[str, Any]) -> Genotype:
        provenance = {**provenance, "space": "mbconv", "width_mult": self.config.width_mult,
                      "layout": self.config.layout}
        return chain_genotype(model.layout, choice.ops, name, provenance)

    def plots(self, folder: Path, history: list[dict[str, Any]], model: MBConvSupernet,
              cfg: SearchConfig, genotype: Genotype) -> tuple[dict[str, str], list[str]]:
        from nasctl.search.plots import write_layer_plot

        kept = self.describe(genotype)["layers"][1:]  # the first layer is fixed
        return write_layer_plot(folder, history, model.choices, cfg.method, kept)

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        chain = genotype.cells[CHAIN_CELL]
        return {"layers": [str(chain.nodes[n].get("op")) for n in sorted(chain.nodes)]}
