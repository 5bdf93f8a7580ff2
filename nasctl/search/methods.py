"""The search-method interface and its registry (``--method``).

A method is one small module: how alphas become mixture weights (activation), an optional
architecture regulariser, in-network hooks (node normalization), optionally its own
architecture-gradient rule (DARTS's second-order step), and a discretization rule per
search space it knows (other spaces use the space's default rule). Adding a method is one
file plus the :func:`register` decorator; its settings are one frozen dataclass,
``Options``, declared with :func:`~nasctl.search.options.option` (flags, checks and the
recorded values all come from it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from nasctl.search.options import NoOptions, Registry, as_dict

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
    Options: ClassVar[type] = NoOptions
    default_ops: ClassVar[tuple[str, ...]]
    hyper: ClassVar[Hyper]
    alpha_init: ClassVar[float] = 1e-3
    needs_probe: ClassVar[bool] = False  # the discretiser reads op outputs on held-out data

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Options()

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
        return as_dict(self.config)


METHODS: Registry[SearchMethod] = Registry("method")
register = METHODS.register


def get_method(name: str, **options: Any) -> SearchMethod:
    """Build a method by name with its declared options (unknown options are an error)."""
    return METHODS.create(name, options)


def method_names() -> list[str]:
    return METHODS.names()
