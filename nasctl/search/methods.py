"""The search-method interface and its registry (``--method``).

A method is one small module: how alphas become mixture weights (activation), an optional
architecture regulariser, in-network hooks (node normalization), optionally its own
architecture-gradient rule (DARTS's second-order step), and a discretization rule per
search space it knows (other spaces use the space's default rule). Adding a method is one
file plus the :func:`register` decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from nasctl.errors import NasctlError

if TYPE_CHECKING:
    from nasctl.search.discretize import CellChoice
    from nasctl.search.space import Discretizer, Supernet
    from nasctl.search.step import SearchStep
    from nasctl.search.supernet import NodeNorm


@dataclass(frozen=True)
class Hyper:
    """A method's official search hyperparameters (the CLI defaults)."""

    lr: float
    lr_min: float
    momentum: float
    weight_decay: float
    grad_clip: float
    arch_lr: float
    arch_betas: tuple[float, float]
    arch_weight_decay: float
    batch_size: int
    epochs: int


@dataclass
class Discretized:
    """A discretization of the cell space: one choice per cell."""

    normal: CellChoice
    reduce: CellChoice
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class SearchMethod:
    """Base class: DARTS-like behaviour, overridden per method."""

    name: ClassVar[str]
    default_ops: ClassVar[tuple[str, ...]]
    hyper: ClassVar[Hyper]
    alpha_init: ClassVar[float] = 1e-3
    needs_probe: ClassVar[bool] = False  # the discretiser reads op outputs on held-out data

    @property
    def node_norm(self) -> NodeNorm:
        return "none"

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def regularizer(self, model: Supernet) -> torch.Tensor | None:
        """Extra architecture loss on the supernet's ``arch_parameters()`` (None: plain
        cross-entropy)."""
        return None

    def arch_gradients(self, step: SearchStep, xw: torch.Tensor, yw: torch.Tensor,
                       xa: torch.Tensor, ya: torch.Tensor
                       ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor] | None:
        """``(alpha gradients, architecture loss, correct)`` when the method has its own
        rule; None: the first-order gradient of the architecture loss."""
        return None

    def discretizer(self, space: str) -> Discretizer | None:
        """This method's discretization rule for the search space named ``space``; None
        where the space's default rule applies."""
        return None

    def options(self) -> dict[str, Any]:
        """The method's settings, for config.json and the genotype's provenance."""
        return {}


METHODS: dict[str, Callable[..., SearchMethod]] = {}


def register(cls: type[SearchMethod]) -> type[SearchMethod]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **options: Any) -> SearchMethod:
    """Build a method by name with its options (unknown options are an error)."""
    _load_builtin()
    try:
        factory = METHODS[name]
    except KeyError:
        raise NasctlError(f"unknown search method {name!r} (known: {', '.join(METHODS)})") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise NasctlError(f"method {name}: {exc}") from None


def method_names() -> list[str]:
    _load_builtin()
    return list(METHODS)


def _load_builtin() -> None:
    from nasctl.search import darts, fairdarts, idarts  # noqa: F401 - registers them
