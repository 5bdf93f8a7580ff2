"""The deployment view of a final network: the units a latency table keys on.

A search space's final network, at its deployment settings, is a sum of units: the
candidate ops at every shape at which they occur, the parts every genotype has (stem,
cell preprocessing, head) and the glue between them (node sums, concatenation, the ReLUs
that ONNX Runtime shares between the ops reading one tensor). A latency table holds one
entry per unit; a prediction sums the entries over :meth:`Deployment.units`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import nn

    from nasctl.genotypes import Genotype


@dataclass(frozen=True)
class Unit:
    """One piece of a deployed final network at one shape: what the latency table keys on."""

    key: str  # stable, readable, unique per (what, shapes), e.g. "sep_conv_3x3 c36 32x32 s1"
    input_shapes: tuple[tuple[int, ...], ...]  # per input, without the batch axis
    # eval-mode module computing it exactly as the final network does (affine BN, folded
    # at export)
    build: Callable[[], nn.Module] = field(compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class GroupUnits:
    """One labelled choice group of a search space, at deployment: per candidate, the units
    that candidate adds to the final network (one per occurrence of the group in the final
    network; empty for 'none')."""

    label: str
    candidates: tuple[str, ...]
    units: tuple[tuple[Unit, ...], ...]


class Deployment(Protocol):
    """A search space's final network at deployment settings."""

    # JSON-able: space, dataset, C, layers, input_size, num_classes (whatever defines the
    # network)
    settings: dict[str, Any]
    input_shape: tuple[int, int, int]
    groups: list[GroupUnits]  # in the supernet's group order
    fixed: list[Unit]  # always present whatever is chosen (stem, preprocessing, head ...)

    def units(self, genotype: Genotype) -> list[Unit]:
        """Every unit of that genotype's final network, with multiplicity, fixed ones and
        glue included: the predictor sums table entries over this list."""
        ...

    def catalogue(self) -> list[Unit]:
        """Every distinct unit any genotype of the space can produce at these settings."""
        ...

    def network(self, genotype: Genotype) -> nn.Module:
        """The final network, eval mode, no aux head, exactly what `nasctl export` exports."""
        ...


def run_unit(input_shape: tuple[int, ...]) -> Unit:
    """The fixed cost of one run of a network (binding the input, returning the output);
    its cost is fitted, not timed."""
    from torch import nn

    return Unit(f"run {'x'.join(str(d) for d in input_shape)}", (tuple(input_shape),),
                lambda: nn.Identity())


def distinct(units: list[Unit]) -> list[Unit]:
    """``units`` without repeats (by key), in first-seen order."""
    seen: dict[str, Unit] = {}
    for unit in units:
        seen.setdefault(unit.key, unit)
    return list(seen.values())
