"""The search-space interface and its registry (``--space``).

A space is a supernet plus what the one search loop needs to know about it: how to build
it from a config and a method, its architecture weights as plain data (for metrics,
arch_history.json and plots), an optional extra architecture loss (the MAC budget), and
how a discretization becomes a genotype. Adding a space is its supernet, its network
builder in ``nets/`` and one :func:`register` call; every loop feature (resume, DDP, AMP,
channels_last, method options, divergence checks) then applies to it unchanged.

A method supplies a discretization rule per space it knows (``SearchMethod.discretizer``);
for any other space the space's own default rule is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from nasctl.errors import NasctlError

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
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


class SearchSpace:
    """Base class of a search space; subclasses fill in every method."""

    name: ClassVar[str]
    help: ClassVar[str]

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

    def extra_arch_loss(self, model: Any, cfg: SearchConfig) -> torch.Tensor | None:
        return None

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

    def summary(self, genotype: Genotype, cfg: SearchConfig) -> tuple[dict[str, Any], list[str]]:
        """Extra report fields and notes for the finished run (e.g. MACs against a budget)."""
        return {}, []

    def plots(self, folder: Path, history: list[dict[str, Any]], model: Any,
              cfg: SearchConfig, genotype: Genotype) -> tuple[dict[str, str], list[str]]:
        return {}, []


SPACES: dict[str, type[SearchSpace]] = {}


def register(cls: type[SearchSpace]) -> type[SearchSpace]:
    SPACES[cls.name] = cls
    return cls


def _load_builtin() -> None:
    from nasctl.search import cells, mbconv  # noqa: F401 - registers them


def get_space(name: str) -> SearchSpace:
    _load_builtin()
    try:
        return SPACES[name]()
    except KeyError:
        raise NasctlError(f"unknown --space {name!r} (known: {', '.join(space_names())})"
                         ) from None


def space_names() -> list[str]:
    """Sorted: registration order depends on which module was imported first."""
    _load_builtin()
    return sorted(SPACES)


def discretizer_for(space: SearchSpace, method: SearchMethod) -> Discretizer:
    """The method's rule for ``space``, or the space's default one."""
    return method.discretizer(space.name) or space.default_discretizer(method)
