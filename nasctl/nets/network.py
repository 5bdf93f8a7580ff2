"""Final (evaluation) networks built from a DARTS-cell genotype.

Structure and module names follow the official DARTS ``NetworkCIFAR`` / ``NetworkImageNet``
(FairDARTS uses the same networks with its dead-node cells), so parameter counts equal the
official ones and official state_dicts load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, cast

import networkx as nx
import torch
from torch import nn

from nasctl.errors import NasctlError
from nasctl.genotypes import Genotype, cell_inputs, live_nodes
from nasctl.genotypes.spaces import DARTS_CELL
from nasctl.nets.ops import FactorizedReduce, Identity, ReLUConvBN, drop_path, make_op

DropPathOn = Literal["edge", "node"]


@dataclass(frozen=True)
class NetworkSettings:
    """Per-dataset defaults (DARTS evaluation settings; `digits` is a small CPU setting)."""

    stem: Literal["cifar", "imagenet"]
    channels: int
    layers: int
    num_classes: int
    input_size: int


DATASET_SETTINGS: dict[str, NetworkSettings] = {
    "cifar10": NetworkSettings("cifar", 36, 20, 10, 32),
    "cifar100": NetworkSettings("cifar", 36, 20, 100, 32),
    "imagenet": NetworkSettings("imagenet", 48, 14, 1000, 224),
    "digits": NetworkSettings("cifar", 16, 8, 10, 32),
}


def dataset_settings(dataset: str) -> NetworkSettings:
    try:
        return DATASET_SETTINGS[dataset]
    except KeyError:
        known = ", ".join(DATASET_SETTINGS)
        raise NasctlError(f"unknown dataset {dataset!r} for a network (known: {known})") from None


class Cell(nn.Module):
    """One cell: preprocess both inputs, compute the live nodes in order, concat."""

    def __init__(self, cell: nx.MultiDiGraph, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool, drop_path_on: DropPathOn = "edge") -> None:
        super().__init__()
        self.reduction = reduction
        self.drop_path_on = drop_path_on
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        self._ops = nn.ModuleList()
        self.op_names: list[str] = []
        # plan (the module layout): per live node, its inputs as (source node, index into _ops)
        self._plan: list[tuple[int, list[tuple[int, int]]]] = []
        for node in live_nodes(cell):
            inputs = []
            for src, op in cell_inputs(cell, node):
                stride = 2 if reduction and src < 2 else 1
                inputs.append((src, len(self._ops)))
                self._ops.append(make_op(op, c, stride))
                self.op_names.append(op)
            self._plan.append((node, inputs))
        self._concat = list(cell.graph["concat"])
        self.multiplier = len(self._concat)
        # What forward computes: the nodes the output depends on. A FairDARTS cell may never
        # read one of its inputs, and a node outside concat that no concat node reads feeds
        # nothing; their modules stay (official parameter counts and state_dict layout) but
        # are not computed.
        needed = set(self._concat)
        for node, inputs in reversed(self._plan):  # nodes only read earlier nodes
            if node in needed:
                needed.update(src for src, _k in inputs)
        self._steps = [(node, inputs) for node, inputs in self._plan if node in needed]
        self._reads0, self._reads1 = 0 in needed, 1 in needed

    def uncomputed_modules(self) -> list[nn.Module]:
        """The modules forward never runs: an unread input's preprocessing, the ops of nodes
        the output does not depend on."""
        computed = {k for _node, inputs in self._steps for _src, k in inputs}
        unread = [m for m, reads in ((self.preprocess0, self._reads0),
                                     (self.preprocess1, self._reads1)) if not reads]
        return unread + [op for k, op in enumerate(self._ops) if k not in computed]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states: dict[int, torch.Tensor] = {}
        if self._reads0:
            states[0] = self.preprocess0(s0)
        if self._reads1:
            states[1] = self.preprocess1(s1)
        dropping = self.training and drop_prob > 0.0
        for node, inputs in self._steps:
            total: torch.Tensor | None = None
            for src, k in inputs:
                op = self._ops[k]
                h = op(states[src])
                if dropping and self.drop_path_on == "edge" and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None  # live nodes have inputs
            if dropping and self.drop_path_on == "node":
                total = drop_path(total, drop_prob)
            states[node] = total
        return torch.cat([states[n] for n in self._concat], dim=1)


class AuxiliaryHead(nn.Module):
    """The DARTS auxiliary classifier (CIFAR: 8x8 input; ImageNet: 14x14, no BN after the
    2x2 conv, as in the official code)."""

    def __init__(self, c: int, num_classes: int, imagenet: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if not imagenet:
            layers.append(nn.BatchNorm2d(768))
        layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """Stem, ``layers`` cells (reductions at layers//3 and 2*layers//3), pooling, classifier.

    Eval mode returns logits. Training mode with the auxiliary head returns
    ``(logits, aux_logits)``. Set ``drop_path_prob`` before a training epoch.
    """

    def __init__(self, genotype: Genotype, channels: int, layers: int, num_classes: int,
                 stem: Literal["cifar", "imagenet"] = "cifar", auxiliary: bool = False,
                 drop_path_on: DropPathOn = "edge") -> None:
        super().__init__()
        if layers < 3:
            raise NasctlError(f"a DARTS network needs at least 3 cells, got {layers}")
        self.genotype_name = genotype.name
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = 0.0
        self.imagenet_stem = stem == "imagenet"
        if self.imagenet_stem:
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, channels // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
            )
            c_prev_prev, c_prev, c_curr = channels, channels, channels
            reduction_prev = True
        else:
            c_stem = 3 * channels
            self.stem = nn.Sequential(
                nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
            )
            c_prev_prev, c_prev, c_curr = c_stem, c_stem, channels
            reduction_prev = False
        self.cells = nn.ModuleList()
        self._aux_position = 2 * layers // 3
        c_aux = c_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell_graph = genotype.reduce if reduction else genotype.normal
            cell = Cell(cell_graph, c_prev_prev, c_prev, c_curr, reduction, reduction_prev,
                        drop_path_on)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self._aux_position:
                c_aux = c_prev
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, self.imagenet_stem)
        self._live_eval = self._cells_read_by([layers - 1])
        self._live_train = self._cells_read_by(
            [layers - 1] + ([self._aux_position] if auxiliary else []))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)
        # Never computed, so never given a gradient: not trainable. DDP then does not wait
        # for their gradients, and the optimizer leaves them as initialised, as it always did.
        for module in self.uncomputed_modules():
            module.requires_grad_(False)

    def uncomputed_modules(self) -> list[nn.Module]:
        """The modules training never runs for this genotype (their outputs reach neither
        the classifier nor the auxiliary head): whole dead cells, and in live cells what
        :meth:`Cell.uncomputed_modules` names; with the ImageNet stem, ``stem1`` when no
        cell reads it. Evaluation runs a subset of what training runs."""
        out: list[nn.Module] = []
        if self.imagenet_stem and not self._reads_stem1(self._live_train):
            out.append(self.stem1)
        for i, cell in enumerate(cast("list[Cell]", self.cells)):
            out.extend(cell.uncomputed_modules() if i in self._live_train else [cell])
        return out

    def _reads_stem1(self, live: frozenset[int]) -> bool:
        """Whether a computed cell reads the ImageNet stem's second output (cell 0's input 1,
        cell 1's input 0)."""
        return any(i in live and reads for i, reads in ((0, self.cells[0]._reads1),
                                                       (1, self.cells[1]._reads0)))

    def _cells_read_by(self, outputs: list[int]) -> frozenset[int]:
        """Cells whose output reaches ``outputs``. A FairDARTS cell that never reads its
        k-1 input makes every other cell dead (an exported graph drops them), so they are
        not computed; their modules stay, keeping official parameter counts."""
        live = set(outputs)
        for i in range(len(self.cells) - 1, -1, -1):
            if i in live:
                cell = self.cells[i]
                live |= {j for j, reads in ((i - 2, cell._reads0), (i - 1, cell._reads1))
                         if reads and j >= 0}
        return frozenset(live)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        live = self._live_train if self.training else self._live_eval
        if self.imagenet_stem:
            s0 = self.stem0(x)
            s1 = self.stem1(s0) if self._reads_stem1(live) else s0  # s0 stands in, unread
        else:
            s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, (cell(s0, s1, self.drop_path_prob) if i in live else s1)
            if i == self._aux_position and self._auxiliary and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


def build_network(
    genotype: Genotype | str | os.PathLike[str],
    dataset: str = "cifar10",
    C: int | None = None,  # noqa: N803 - the papers' name for the initial channel count
    layers: int | None = None,
    auxiliary: bool = True,
    drop_path: float = 0.0,
    num_classes: int | None = None,
    drop_path_on: DropPathOn | None = None,
) -> nn.Module:
    """Build the final network for ``genotype`` (a Genotype, a file or a zoo name).

    Defaults per dataset: CIFAR C=36, 20 cells; ImageNet C=48, 14 cells. ``drop_path`` is
    the initial drop-path probability (training ramps it). ``drop_path_on`` defaults to
    "node" for FairDARTS genotypes (the official FairDARTS network drops each node's sum)
    and "edge" otherwise (DARTS drops each non-identity edge).
    """
    if isinstance(genotype, str | os.PathLike):
        from nasctl.genotypes import load_genotype

        genotype = load_genotype(genotype)
    settings = dataset_settings(dataset)
    if genotype.search_space != DARTS_CELL:  # the chain fixes its own widths and depth
        from nasctl.nets.mbconv import build_mbconv_network

        classes = num_classes if num_classes is not None else settings.num_classes
        return build_mbconv_network(genotype, classes, drop_path=drop_path)
    if drop_path_on is None:
        drop_path_on = "node" if _is_fairdarts(genotype) else "edge"
    if C is not None and C < 1:
        raise NasctlError(f"the initial channel count C must be >= 1, got {C}")
    if layers is not None and layers < 3:
        raise NasctlError(f"a DARTS network needs at least 3 cells (two are reductions), "
                          f"got {layers}")
    net = DartsNetwork(
        genotype,
        channels=C if C is not None else settings.channels,
        layers=layers if layers is not None else settings.layers,
        num_classes=num_classes if num_classes is not None else settings.num_classes,
        stem=settings.stem,
        auxiliary=auxiliary,
        drop_path_on=drop_path_on,
    )
    net.drop_path_prob = drop_path
    return net


def _is_fairdarts(genotype: Genotype) -> bool:
    prov = genotype.provenance
    return (
        str(prov.get("method", "")).lower() == "fairdarts"
        or prov.get("imported_from") == "fairdarts"
        or (genotype.name or "").lower().startswith("fairdarts")
    )
