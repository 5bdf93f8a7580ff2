"""Hardware costs of the searched network: the interface, its registry, and what every
cost shares (the differentiable expectation, the penalty, the prediction of a
discretized network, the repair).

A cost prices *units* of the final network at its deployment settings (see
:mod:`nasctl.nets.units`): :meth:`Cost.unit_cost` is the one thing a new cost (energy,
memory) writes, besides its declared ``Options`` and one :func:`register` call. Prices are
summed per candidate over every place its group occurs in the final network, so a
search on a small proxy aims at the network that will be deployed. The expectation over a
space's choice groups uses each method's own mixture weights (sigmoids or a softmax) in a
relaxation of the rule the groups describe (see :func:`~nasctl.search.space.mixture_shares`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from nasctl.errors import NasctlError
from nasctl.search.options import Registry, specs

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment, Unit
    from nasctl.search.config import SearchConfig
    from nasctl.search.space import ChoiceGroup


class Cost:
    """Base class of a cost. Subclasses declare ``Options`` with a target and a weight
    (``target`` is None: the cost is inactive) and price one unit."""

    name: ClassVar[str]
    unit: ClassVar[str]  # what a price is in: "MACs", "ms"
    target_scale: ClassVar[float] = 1.0  # the target option's unit in prices (1e6: millions)
    Options: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def target(self) -> float | None:
        """The target in price units; None when the cost is not asked for."""
        raise NotImplementedError

    @property
    def weight(self) -> float:
        raise NotImplementedError

    @property
    def repair(self) -> bool:
        """Whether a discretized network over the target is repaired (see :func:`repair`)."""
        return False

    def reports(self, cfg: SearchConfig) -> bool:
        """Whether a search records this cost (by default: when it has a target)."""
        return self.target is not None

    def problems(self, cfg: SearchConfig) -> list[str]:
        """Settings this cost cannot work with, as messages (checked before any work)."""
        return []

    def check_deployment(self, deployment: Deployment) -> None:
        """Refuse a deployment this cost cannot price (a table for other settings)."""

    def unit_cost(self, unit: Unit) -> float:
        raise NotImplementedError

    def measure(self, deployment: Deployment, genotype: Genotype) -> float | None:
        """The cost of ``genotype`` measured rather than predicted, where that means
        something (latency on its runtime); None otherwise."""
        return None

    def describe(self, value: float) -> str:
        return f"{value:,.0f} {self.unit}"

    def bind(self, deployment: Deployment) -> BoundCost:
        """This cost priced for ``deployment`` (every unit priced once, when first asked)."""
        self.check_deployment(deployment)
        return BoundCost(self, deployment)


class BoundCost:
    """A cost priced for one deployment: per group, per candidate, the summed price of its
    units wherever the group occurs, plus the units every network has. Prices are taken
    when first needed: a cost that only reports prices just the networks it reports."""

    def __init__(self, cost: Cost, deployment: Deployment) -> None:
        self.cost, self.deployment = cost, deployment
        self._cache: dict[str, float] = {}
        self.glue = 0.0  # what a discretized network costs beyond its candidates and fixed part

    def price(self, unit: Unit) -> float:
        if unit.key not in self._cache:
            self._cache[unit.key] = self.cost.unit_cost(unit)
        return self._cache[unit.key]

    @cached_property
    def fixed(self) -> float:
        return sum(self.price(u) for u in self.deployment.fixed)

    @cached_property
    def prices(self) -> list[list[float]]:
        return [[sum(self.price(u) for u in units) for units in group.units]
                for group in self.deployment.groups]

    def expected(self, groups: list[ChoiceGroup]) -> torch.Tensor:
        """E[cost] under the groups' current mixture: differentiable in the alphas."""
        if len(groups) != len(self.prices):
            raise NasctlError(f"{self.cost.name} cost: the space has {len(groups)} choice "
                              f"groups, its deployment {len(self.prices)}")
        from nasctl.search.space import mixture_shares

        total = torch.zeros((), dtype=torch.float64, device=groups[0].weights.device)
        for shares, row in zip(mixture_shares(groups), self.prices, strict=True):
            total = total + (shares.double() * shares.new_tensor(row, dtype=torch.float64)).sum()
        return total + self.fixed + self.glue

    def penalty(self, groups: list[ChoiceGroup]) -> torch.Tensor:
        """``weight * (E[cost] / target - 1)^2``: pulls the expectation to the target from
        either side (a budget the search may use, as ProxylessNAS's and TF-NAS's losses)."""
        assert self.cost.target is not None
        ratio = self.expected(groups) / self.cost.target
        return self.cost.weight * (ratio - 1.0).pow(2)

    def predict(self, genotype: Genotype) -> float:
        """The cost of a discretized network: the sum over every unit it deploys."""
        return float(sum(self.price(u) for u in self.deployment.units(genotype)))

    def linear(self, kept: list[list[int]]) -> float:
        """A choice's fixed part plus its candidates' prices: what :meth:`predict` adds up
        less the glue between them."""
        return self.fixed + sum(self.prices[g][k] for g, ks in enumerate(kept) for k in ks)


COSTS: Registry[Cost] = Registry("cost", selected_by_flag=False)
register = COSTS.register


def costs_of(cfg: SearchConfig) -> list[Cost]:
    """Every registered cost with its settings from ``cfg`` (checked)."""
    declared = {s.name for s in COSTS.all_specs()}
    unknown = sorted(set(cfg.cost_options) - declared)
    if unknown:
        raise NasctlError(f"unknown cost settings {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(declared))})")
    out = []
    for cls in COSTS:
        own = {s.name for s in specs(cls.Options, COSTS.owner(cls.name))}
        out.append(COSTS.create(cls.name, {k: v for k, v in cfg.cost_options.items()
                                           if k in own}))
    return out


def active_costs(cfg: SearchConfig) -> list[Cost]:
    """The costs the search was asked to aim at (a target was given)."""
    return [c for c in costs_of(cfg) if c.target is not None]


@dataclass
class Repair:
    """What a repair did: the swaps, and whether the prediction now meets the target."""

    cost: str
    swaps: list[str]
    met: bool
    before: float
    after: float


def repair(bound: BoundCost, groups: list[ChoiceGroup], kept: list[list[int]],
           predict: Callable[[list[list[int]]], float]) -> tuple[list[list[int]], Repair]:
    """Swap kept candidates for cheaper ones of the same group until ``predict`` meets the
    target: each time the swap that gives up the least mixture weight per unit of cost
    saved (``none`` is never swapped in). Returns the new choice and what was done."""
    assert bound.cost.target is not None
    target = bound.cost.target
    kept = [list(k) for k in kept]
    before = current = predict(kept)
    swaps: list[str] = []
    weights = [g.weights.detach().double().cpu().tolist() for g in groups]
    while current > target:
        best: tuple[float, int, int, int] | None = None
        for g, ks in enumerate(kept):
            for k in ks:
                for alt, alt_price in enumerate(bound.prices[g]):
                    saved = bound.prices[g][k] - alt_price
                    if alt in ks or saved <= 0 or groups[g].candidates[alt] == "none":
                        continue
                    loss = (weights[g][k] - weights[g][alt]) / saved
                    if best is None or loss < best[0]:
                        best = (loss, g, k, alt)
        if best is None:
            break
        _loss, g, k, alt = best
        kept[g] = [alt if x == k else x for x in kept[g]]
        current = predict(kept)
        cands = groups[g].candidates
        swaps.append(f"{groups[g].label}: {cands[k]} -> {cands[alt]}")
    return kept, Repair(bound.cost.name, swaps, current <= target, before, current)
