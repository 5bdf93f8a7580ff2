"""The search-space interface and its registry (``--space``).

A space is a supernet plus what the one search loop needs to know about it: how to build
it from a config and a method, its choices as labelled groups of candidates with their
mixture weights (:meth:`SearchSpace.groups`, which the costs read), the same groups in the
final network at deployment settings (:meth:`SearchSpace.deployment`: which units each
candidate adds there, and how often), its architecture weights as plain data (for
metrics, arch_history.json and plots), and how a discretization becomes a genotype.
Adding a space is its supernet, its network builder in ``nets/`` and one :func:`register`
call; every loop feature (resume, DDP, AMP, channels_last, method options, costs,
divergence checks) then applies to it unchanged. Its settings are one frozen dataclass,
``Options``, declared with :func:`~nasctl.search.options.option`.

A method supplies a discretization rule per space it knows (``SearchMethod.discretizer``);
for any other space the space's own default rule is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from nasctl.search.options import NoOptions, Registry

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment
    from nasctl.search.config import SearchConfig
    from nasctl.search.methods import SearchMethod

Probe = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Supernet(Protocol):
    """What the loop asks of a search network (an ``nn.Module``)."""

    def arch_parameters(self) -> list[nn.Parameter]: ...

    def weight_parameters(self) -> Iterable[nn.Parameter]: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class Choice(Protocol):
    """A discretization: the space's choice plus the rule's settings and notes."""

    settings: dict[str, Any]
    notes: list[str]


Discretizer = Callable[[Any, "Probe | None"], Any]


@dataclass(frozen=True, eq=False)
class ChoiceGroup:
    """One choice of a space: a labelled group of candidates and their current mixture
    weights (the method's activation of the alphas; differentiable).

    ``exclusive`` groups keep exactly one candidate (a layer of a chain). Groups sharing a
    ``bucket`` compete: the rule keeps ``keep`` of them, each with one candidate (a cell
    node keeps two of its in-edges, each with its strongest op)."""

    label: str
    candidates: tuple[str, ...]
    weights: torch.Tensor
    exclusive: bool = False
    bucket: str | None = None
    keep: int = 1


def mixture_shares(groups: list[ChoiceGroup]) -> list[torch.Tensor]:
    """How much of each candidate the discretized network is expected to hold, per group:
    the relaxation of the rule the groups describe, differentiable in the weights.

    - an exclusive group: its weights normalized to sum to one;
    - a group in a bucket: the group is kept with probability ``keep * s / S`` (at most
      1), ``s`` its candidates' total weight and ``S`` the bucket's, and then holds each
      candidate in proportion to its weight (``none`` holds nothing). Pushing every weight
      of a bucket down does not make it cheaper: the rule still keeps ``keep`` groups;
    - any other group: the weights themselves (a sigmoid is a keep-probability).
    """
    real = [g.weights.new_tensor([c != "none" for c in g.candidates]) for g in groups]
    totals: dict[str, torch.Tensor] = {}
    for g, mask in zip(groups, real, strict=True):
        if g.bucket is not None:
            totals[g.bucket] = totals.get(g.bucket, 0) + (g.weights * mask).sum()
    shares = []
    for g, mask in zip(groups, real, strict=True):
        if g.exclusive:
            shares.append(g.weights / g.weights.sum())
        elif g.bucket is not None:
            held = g.weights * mask
            kept = (g.keep * held.sum() / totals[g.bucket]).clamp(max=1.0)
            shares.append(kept * held / held.sum())
        else:
            shares.append(g.weights)
    return shares


class SearchSpace:
    """Base class of a search space; subclasses fill in every method."""

    name: ClassVar[str]
    help: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Options()

    def resolved_options(self, method: SearchMethod) -> Any:
        """The settings with defaults that depend on the method filled in (the cell space's
        ops)."""
        return self.config

    def groups(self, model: Any) -> list[ChoiceGroup]:
        """The supernet's choices, in a fixed order that :meth:`deployment` follows."""
        raise NotImplementedError

    def deployment(self, cfg: SearchConfig) -> Deployment | None:
        """The final network at its deployment settings (what the costs price); None for a
        space without one, which then reports no costs and refuses a cost target."""
        return None

    def kept(self, choice: Any) -> list[list[int]]:
        """Per group (in :meth:`groups` order), the candidates ``choice`` keeps."""
        raise NotImplementedError

    def with_kept(self, choice: Any, kept: list[list[int]], model: Any) -> Any:
        """``choice`` (None: a new one) with each group keeping ``kept`` instead."""
        raise NotImplementedError

    def cheapest(self, prices: list[list[float]]) -> list[list[int]]:
        """The cheapest choice the space builds under ``prices`` (per group, per
        candidate), as :meth:`kept` gives it: the floor of what a cost target can ask."""
        raise NotImplementedError

    def problems(self, cfg: SearchConfig) -> list[str]:
        """Settings this space cannot use (unknown ops, layouts...), as messages."""
        return []

    def build(self, cfg: SearchConfig, method: SearchMethod, num_classes: int,
              device: torch.device) -> nn.Module:
        """The supernet, on CPU (the loop moves it to ``device``, which some choices such as
        recomputation depend on)."""
        raise NotImplementedError

    def arch_record(self, model: Any) -> dict[str, Any]:
        """The current mixture weights as JSON-able lists, one entry per group."""
        raise NotImplementedError

    def labels(self, model: Any) -> dict[str, Any]:
        """What the rows of :meth:`arch_record` are (edges, ops, layers) for plots."""
        raise NotImplementedError

    def default_discretizer(self, method: SearchMethod) -> Discretizer:
        raise NotImplementedError

    def fallback(self, choice: Any) -> list[str]:
        """The parts of ``choice`` where the rule kept nothing and a fallback decided."""
        return []

    def choice_doc(self, choice: Any) -> Any:
        """The choice as JSON (the per-epoch ``genotype`` in metrics.jsonl)."""
        raise NotImplementedError

    def genotype(self, model: Any, choice: Any, cfg: SearchConfig, name: str,
                 provenance: dict[str, Any]) -> Genotype:
        raise NotImplementedError

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        """The found architecture as JSON-able data for summaries (``nasctl search``)."""
        raise NotImplementedError

    def plots(self, folder: Path, history: list[dict[str, Any]], model: Any,
              cfg: SearchConfig, genotype: Genotype) -> tuple[dict[str, str], list[str]]:
        return {}, []


SPACES: Registry[SearchSpace] = Registry("space")
register = SPACES.register


def get_space(name: str, options: dict[str, Any] | None = None) -> SearchSpace:
    return SPACES.create(name, options)


def space_names() -> list[str]:
    return SPACES.names()


def discretizer_for(space: SearchSpace, method: SearchMethod) -> Discretizer:
    """The method's rule for ``space``, or the space's default one."""
    return method.discretizer(space.name) or space.default_discretizer(method)
