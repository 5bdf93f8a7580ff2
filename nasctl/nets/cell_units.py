"""The DARTS cell network (:mod:`nasctl.nets.network`) as units, at deployment settings.

What runs in the deployed graph, not what the module tree holds: only live cells, only
the nodes a cell's output depends on, only the inputs it reads (read off the network
itself, so this never drifts from what it computes). ONNX Runtime's common-subexpression
elimination merges identical ReLUs reading one tensor, so the ops that start with a ReLU
(sep/dil convs, factorized reductions, the cells' 1x1 preprocessing) are units without
that ReLU, and each tensor read by at least one of them adds one ``relu`` unit. Node sums
add an ``add`` unit per extra input that no convolution absorbs (ONNX Runtime folds a sum
into the convolution producing one of its inputs), each cell a ``concat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from nasctl.errors import GenotypeError, NasctlError
from nasctl.genotypes.spaces import DARTS_CELL
from nasctl.nets.network import Cell, DartsNetwork, build_network, dataset_settings
from nasctl.nets.ops import FactorizedReduce, ReLUConvBN, make_op
from nasctl.nets.units import GroupUnits, Unit, distinct, run_unit

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype

# ops whose first layer is a ReLU on their input (shared in the deployed graph)
_RELU_FIRST = frozenset({"sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3",
                         "dil_conv_5x5", "conv_7x1_1x7"})


def _strip_relu(module: nn.Module) -> nn.Module:
    """The module without its leading ReLU (that ReLU is the shared ``relu`` unit)."""
    if isinstance(module, FactorizedReduce):
        module.relu = nn.Identity()
    else:
        seq = cast("nn.Sequential", module.op)
        seq[0] = nn.Identity()
    return module.eval()


def relu_first(op: str, stride: int) -> bool:
    """Whether ``op`` at ``stride`` starts with a ReLU of its input."""
    return op in _RELU_FIRST or (op == "skip_connect" and stride == 2)


def op_unit(op: str, c: int, size: int, stride: int) -> Unit | None:
    """The unit of candidate ``op`` on a ``c`` x ``size`` x ``size`` input (None: the op
    costs nothing, i.e. the identity)."""
    if op == "skip_connect" and stride == 1:
        return None

    def build() -> nn.Module:
        module = make_op(op, c, stride)
        return _strip_relu(module) if relu_first(op, stride) else module.eval()

    name = "zero" if op == "none" else op
    return Unit(f"{name} c{c} {size}x{size} s{stride}", ((c, size, size),), build)


def relu_unit(c: int, size: int) -> Unit:
    return Unit(f"relu c{c} {size}x{size}", ((c, size, size),), lambda: nn.ReLU().eval())


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class _Concat(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class _Head(nn.Module):
    """Global average pooling and the classifier, as the network ends."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(x).flatten(1))


def add_unit(c: int, size: int) -> Unit:
    shape = (c, size, size)
    return Unit(f"add c{c} {size}x{size}", (shape, shape), lambda: _Add().eval())


def concat_unit(n: int, c: int, size: int) -> Unit:
    shape = (c, size, size)
    return Unit(f"concat {n}x c{c} {size}x{size}", (shape,) * n, lambda: _Concat().eval())


def preprocess_unit(c_in: int, c_out: int, size: int, reduce: bool) -> Unit:
    """A cell's input preprocessing without its ReLU: 1x1 conv + BN, or the factorized
    reduction of the previous reduction cell's k-2 input."""

    def build() -> nn.Module:
        module = FactorizedReduce(c_in, c_out) if reduce else ReLUConvBN(c_in, c_out, 1, 1, 0)
        return _strip_relu(module)

    what = "factorized_reduce" if reduce else "conv_1x1"
    return Unit(f"preprocess {what} c{c_in}->c{c_out} {size}x{size}", ((c_in, size, size),),
                build)


def _stem_units(c: int, size: int, imagenet: bool) -> tuple[list[Unit], int]:
    """The stem's units and the resolution the first cell reads."""
    if not imagenet:
        def cifar() -> nn.Module:
            return nn.Sequential(nn.Conv2d(3, 3 * c, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(3 * c)).eval()

        return [Unit(f"stem c3->c{3 * c} {size}x{size}", ((3, size, size),), cifar)], size

    def stem0() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
            nn.ReLU(), nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c)).eval()

    def stem1() -> nn.Module:  # without its ReLU (shared with cell 0's preprocessing)
        return nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                             nn.BatchNorm2d(c)).eval()

    mid = (size - 1) // 4 + 1
    return [Unit(f"stem0 c3->c{c} {size}x{size}", ((3, size, size),), stem0),
            Unit(f"stem1 c{c}->c{c} {mid}x{mid}", ((c, mid, mid),), stem1)], (mid - 1) // 2 + 1


@dataclass(frozen=True)
class _CellShape:
    """One cell of the final network: channels and resolutions (these do not depend on
    the genotype; the input widths do, through the previous cells' concat)."""

    index: int
    reduction: bool
    reduction_prev: bool
    c_prev: int  # the k-1 input's width when every cell concatenates all its nodes
    c: int
    size: int  # the k-1 input's resolution (the output's is half of it in a reduction cell)
    size_prev_prev: int

    @property
    def out_size(self) -> int:
        return self.size // 2 if self.reduction else self.size


class CellDeployment:
    """The DARTS cell network at deployment settings (``dataset``'s final-training C,
    cells and resolution unless given)."""

    def __init__(self, ops: Sequence[str], dataset: str, channels: int | None = None,
                 layers: int | None = None, num_nodes: int = 4) -> None:
        from nasctl.search.supernet import edge_list

        ds = dataset_settings(dataset)
        self.ops = tuple(ops)
        self.dataset = dataset
        self.channels = channels if channels is not None else ds.channels
        self.layers = layers if layers is not None else ds.layers
        if self.channels < 1 or self.layers < 3:
            raise NasctlError(f"a DARTS network needs C >= 1 and at least 3 cells, got "
                              f"C={self.channels}, {self.layers} cells")
        self.num_nodes = num_nodes
        self.num_classes = ds.num_classes
        self.imagenet = ds.stem == "imagenet"
        self.input_shape = (3, ds.input_size, ds.input_size)
        self.settings: dict[str, Any] = {
            "space": "cell", "dataset": dataset, "ops": list(self.ops), "C": self.channels,
            "layers": self.layers,
            "num_nodes": num_nodes, "input_size": ds.input_size,
            "num_classes": self.num_classes}
        self._stem, size = _stem_units(self.channels, ds.input_size, self.imagenet)
        self._cells = self._shapes(size)
        self.groups = [GroupUnits(f"{kind} {j}->{i}", self.ops,
                                  tuple(self._occurrences(op, kind == "reduce", j < 2)
                                        for op in self.ops))
                       for kind in ("normal", "reduce") for j, i in edge_list(num_nodes)]
        full = self.num_nodes
        self.fixed = [run_unit(self.input_shape), *self._stem,
                      *(u for cell in self._cells for u in self._preprocess(cell, full, full)),
                      *(concat_unit(full, cell.c, cell.out_size) for cell in self._cells),
                      *(relu_unit(full * cell.c, cell.out_size) for cell in self._cells[:-1]),
                      self._stem_relu(), self._head(full)]

    def _occurrences(self, op: str, reduce: bool, from_input: bool) -> tuple[Unit, ...]:
        if op == "none":
            return ()
        units = []
        for cell in self._cells:
            if cell.reduction == reduce:
                stride = 2 if reduce and from_input else 1
                unit = op_unit(op, cell.c, cell.out_size * stride, stride)
                if unit is not None:
                    units.append(unit)
        return tuple(units)

    def _shapes(self, size: int) -> list[_CellShape]:
        c = self.channels
        c_p = c if self.imagenet else 3 * c
        reduction_prev = self.imagenet
        size_pp = 2 * size if self.imagenet else size  # stem0's output resolution
        cells = []
        for i in range(self.layers):
            reduction = i in (self.layers // 3, 2 * self.layers // 3)
            if reduction:
                c *= 2
            cells.append(_CellShape(i, reduction, reduction_prev, c_p, c, size, size_pp))
            reduction_prev = reduction
            c_p = self.num_nodes * c
            size_pp, size = size, cells[-1].out_size
        return cells

    def _stem_width(self) -> int:
        return self.channels if self.imagenet else 3 * self.channels

    def _input_widths(self, cell: _CellShape, m0: int, m1: int) -> tuple[int, int]:
        """The widths of a cell's k-2 and k-1 inputs when the cells before it concatenate
        ``m0`` and ``m1`` nodes (the stem's width where the input is the stem)."""
        prev = self._cells[cell.index - 1] if cell.index >= 1 else None
        prev2 = self._cells[cell.index - 2] if cell.index >= 2 else None
        c0 = m0 * prev2.c if prev2 else self._stem_width()
        c1 = m1 * prev.c if prev else self._stem_width()
        return c0, c1

    def _preprocess(self, cell: _CellShape, m0: int, m1: int) -> list[Unit]:
        c0, c1 = self._input_widths(cell, m0, m1)
        return [preprocess_unit(c0, cell.c, cell.size_prev_prev, cell.reduction_prev),
                preprocess_unit(c1, cell.c, cell.size, False)]

    def _head(self, m: int) -> Unit:
        last = self._cells[-1]
        c, size = m * last.c, last.out_size
        return Unit(f"head c{c} {size}x{size} ->{self.num_classes}", ((c, size, size),),
                    lambda: _Head(c, self.num_classes).eval())

    def _stem_relu(self) -> Unit:
        """The ReLU of the stem's (ImageNet: stem0's) output, read by cell preprocessing."""
        return relu_unit(self._stem_width(), self._cells[0].size_prev_prev)

    def network(self, genotype: Genotype) -> nn.Module:
        return build_network(genotype, dataset=self.dataset, C=self.channels,
                             layers=self.layers, auxiliary=False).eval()

    def _meta_network(self, genotype: Genotype) -> DartsNetwork:
        with torch.device("meta"):
            net = build_network(genotype, dataset=self.dataset, C=self.channels,
                                layers=self.layers, auxiliary=False)
        return cast("DartsNetwork", net.eval())

    def units(self, genotype: Genotype) -> list[Unit]:
        if genotype.search_space != DARTS_CELL:
            raise GenotypeError(f"{genotype.name or 'the genotype'} is a "
                                f"{genotype.search_space} genotype, not a {DARTS_CELL} one")
        net = self._meta_network(genotype)
        live = net._live_eval
        cells = cast("list[Cell]", list(net.cells))
        out: list[Unit] = [run_unit(self.input_shape), self._stem[0]]
        # tensors that ReLU-first consumers read: cell outputs by index, -1 the stem (or
        # stem0), -2 ImageNet's stem1
        relu_read: dict[int, Unit] = {}
        stem1 = self.imagenet and net._reads_stem1(live)
        if stem1:
            out.append(self._stem[1])
            relu_read[-1] = self._stem_relu()
        ids = [-1, -2 if stem1 else -1]  # the tensors s0, s1 of the next cell
        widths = {-1: self._stem_width(), -2: self.channels}
        for cell_net, shape in zip(cells, self._cells, strict=True):
            if shape.index in live:
                pre0, pre1 = self._preprocess_of(cell_net, shape)
                if cell_net._reads0:
                    out.append(pre0)
                    relu_read[ids[0]] = relu_unit(widths[ids[0]], shape.size_prev_prev)
                if cell_net._reads1:
                    out.append(pre1)
                    relu_read[ids[1]] = relu_unit(widths[ids[1]], shape.size)
                out.extend(self._cell_units(cell_net, shape))
                widths[shape.index] = cell_net.multiplier * shape.c
                ids = [ids[1], shape.index]
            else:
                ids = [ids[1], ids[1]]
        out.extend(relu_read.values())
        out.append(self._head(cells[-1].multiplier))
        return out

    def _preprocess_of(self, cell: Cell, shape: _CellShape) -> list[Unit]:
        """The cell's preprocessing units at the widths this genotype gives its inputs."""
        pre0 = cell.preprocess0
        c0 = (pre0.conv_1.in_channels if isinstance(pre0, FactorizedReduce)
              else cast("ReLUConvBN", pre0).op[1].in_channels)
        c1 = cast("ReLUConvBN", cell.preprocess1).op[1].in_channels
        return [preprocess_unit(c0, shape.c, shape.size_prev_prev, shape.reduction_prev),
                preprocess_unit(c1, shape.c, shape.size, False)]

    def _cell_units(self, cell: Cell, shape: _CellShape) -> list[Unit]:
        c, out_size = shape.c, shape.out_size
        out: list[Unit] = []
        relu_states: set[int] = set()
        for _node, inputs in cell._steps:
            for src, k in inputs:
                op = cell.op_names[k]
                stride = 2 if shape.reduction and src < 2 else 1
                unit = op_unit(op, c, out_size * stride, stride)
                if unit is not None:
                    out.append(unit)
                if relu_first(op, stride):
                    relu_states.add(src)
            # ONNX Runtime folds a sum into the convolution producing one of its inputs
            folded = sum(cell.op_names[k] in _RELU_FIRST for _src, k in inputs)
            out.extend([add_unit(c, out_size)] * max(0, len(inputs) - 1 - folded))
        for state in sorted(relu_states):
            out.append(relu_unit(c, shape.size if state < 2 else out_size))
        out.append(concat_unit(len(cell._concat), c, out_size))
        return out

    def catalogue(self) -> list[Unit]:
        units: list[Unit] = [run_unit(self.input_shape), *self._stem, self._stem_relu()]
        nodes = range(1, self.num_nodes + 1)
        units += [self._head(m) for m in nodes]
        for cell in self._cells:
            for m0 in nodes:
                for m1 in nodes:
                    units += self._preprocess(cell, m0, m1)
            units += [relu_unit(m * cell.c, cell.out_size) for m in nodes]
            units += [relu_unit(cell.c, cell.size), relu_unit(cell.c, cell.out_size),
                      add_unit(cell.c, cell.out_size)]
            units += [concat_unit(n, cell.c, cell.out_size) for n in nodes]
            for op in self.ops:
                for stride in ((1, 2) if cell.reduction else (1,)):
                    unit = op_unit(op, cell.c, cell.out_size * stride, stride)
                    if unit is not None:
                        units.append(unit)
        return distinct(units)
