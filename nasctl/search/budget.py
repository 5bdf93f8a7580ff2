"""The costs one search run tracks: the penalties its architecture steps add, the
per-epoch record (the expectation and the prediction of the network the rule would pick
now), the check that a target can be met at all, and the final report (target,
prediction, measurement), with the repair where a cost asks for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from nasctl.errors import NasctlError
from nasctl.latency.table import describe_settings
from nasctl.search.cost import BoundCost, Repair, costs_of, repair
from nasctl.search.options import as_dict

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.search.config import SearchConfig
    from nasctl.search.space import SearchSpace

GenotypeOf = Callable[[Any], "Genotype"]


@dataclass
class CostReport:
    """One cost of the found network."""

    cost: str
    unit: str
    target: float | None
    expected: float | None  # under the final mixture weights (costs with a target)
    predicted: float  # of the discretized network
    measured: float | None = None
    repair: Repair | None = None
    network: str = ""  # the deployed network priced ("the cell network on cifar10, ...")

    @property
    def error_pct(self) -> float | None:
        """The prediction's error against the measurement, in % of the measurement."""
        if self.measured is None or self.measured <= 0:
            return None
        return 100.0 * (self.predicted - self.measured) / self.measured

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        value = self.measured if self.measured is not None else self.predicted
        return value <= self.target * 1.1  # within 10% of the target, or below it

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["repair"] = None if self.repair is None else asdict(self.repair)
        doc["error_pct"] = self.error_pct
        doc["meets_target"] = self.meets_target
        return doc


class Budget:
    """The reporting costs of a search (MACs always; latency with a table), priced for
    the space's final network at its deployment settings."""

    def __init__(self, cfg: SearchConfig, space: SearchSpace, model: Any) -> None:
        self.space, self.model = space, model
        costs = [c for c in costs_of(cfg) if c.reports(cfg)]
        deployment = space.deployment(cfg) if costs else None
        if deployment is None:
            aimed = [c.name for c in costs if c.target is not None]
            if aimed:
                raise NasctlError(f"the {space.name} space has no deployment view, so its "
                                  f"{', '.join(aimed)} cannot be priced; drop the target")
            costs = []
        self.bound: list[BoundCost] = [c.bind(deployment) for c in costs]  # type: ignore[arg-type]

    @property
    def penalized(self) -> list[BoundCost]:
        return [b for b in self.bound if b.cost.target is not None]

    def loss(self) -> torch.Tensor | None:
        """The penalties of every cost with a target (None: no target)."""
        if not self.penalized:
            return None
        groups = self.space.groups(self.model)
        zero = torch.zeros((), dtype=torch.float64)
        return sum((b.penalty(groups) for b in self.penalized), zero).float()  # type: ignore[union-attr]

    def check_targets(self, cheapest: Callable[[BoundCost], Genotype]) -> None:
        """Refuse a target below the cheapest network the space builds (one line); the
        cheapest network's glue starts the expectation's (see :meth:`record`)."""
        for b in self.penalized:
            network = cheapest(b)
            floor = b.predict(network)
            b.glue = floor - b.linear(self.space.cheapest(b.prices))
            assert b.cost.target is not None
            if b.cost.target < floor:
                raise NasctlError(
                    f"the {b.cost.name} target {b.cost.describe(b.cost.target)} is below the "
                    f"cheapest network this space builds at the deployment settings "
                    f"({b.cost.describe(floor)}, the cheapest op on one edge per node); "
                    "raise the target")

    def record(self, choice: Any, genotype: Genotype) -> dict[str, dict[str, float | None]]:
        """This epoch's expectation and the prediction of ``genotype`` (the network the
        rule picks now, ``choice``), per cost.

        What the candidates' prices leave out, the glue between them (a latency table's
        shared ReLUs, standalone sums, layout reorders), depends on the whole network, not
        on any one candidate: the expectation carries the glue of the network the rule
        picked at the last epoch's end (a constant: no gradient)."""
        if not self.bound:
            return {}
        groups = self.space.groups(self.model)
        record = {}
        for b in self.bound:
            predicted = b.predict(genotype)
            if b.cost.target is not None:
                b.glue = predicted - b.linear(self.space.kept(choice))
            with torch.no_grad():
                record[b.cost.name] = {"expected": _expected(b, groups),
                                       "predicted": predicted, "target": b.cost.target}
        return record

    def repaired(self, choice: Any, genotype_of: GenotypeOf) -> tuple[Any, list[Repair]]:
        """``choice`` with the candidates swapped, for every cost that asks for a repair,
        until its prediction meets its target."""
        done = []
        for b in self.penalized:
            if not b.cost.repair:
                continue
            groups = self.space.groups(self.model)

            def predict(kept: list[list[int]], b: BoundCost = b, base: Any = choice) -> float:
                return b.predict(genotype_of(self.space.with_kept(base, kept, self.model)))

            kept, result = repair(b, groups, self.space.kept(choice), predict)
            if result.swaps:
                choice = self.space.with_kept(choice, kept, self.model)
            done.append(result)
        return choice, done

    def provenance(self, repairs: list[Repair]) -> dict[str, Any]:
        """What the discretization's record says of the costs: each target's settings and
        any repair (named, so a genotype says it was changed after the rule)."""
        doc: dict[str, Any] = {}
        for b in self.penalized:
            doc[f"{b.cost.name}_cost"] = as_dict(b.cost.config)
        for r in repairs:
            doc[f"{r.cost}_repair"] = {"swaps": r.swaps, "before": r.before,
                                       "after": r.after, "met": r.met}
        return doc

    def report(self, genotype: Genotype, repairs: list[Repair]) -> list[CostReport]:
        if not self.bound:
            return []
        groups = self.space.groups(self.model)
        by_cost = {r.cost: r for r in repairs}
        reports = []
        for b in self.bound:
            with torch.no_grad():
                expected = _expected(b, groups)
            reports.append(CostReport(b.cost.name, b.cost.unit, b.cost.target, expected,
                                      b.predict(genotype),
                                      b.cost.measure(b.deployment, genotype),
                                      by_cost.get(b.cost.name),
                                      describe_settings(b.deployment.settings)))
        return reports


def _expected(bound: BoundCost, groups: list[Any]) -> float | None:
    """The expectation of a cost with a target (the others only report networks)."""
    return None if bound.cost.target is None else float(bound.expected(groups))


def notes_for(reports: list[CostReport]) -> list[str]:
    """One line per cost that missed its target."""
    notes = []
    for r in reports:
        if r.target is None or r.meets_target:
            continue
        value = r.measured if r.measured is not None else r.predicted
        how = "measured" if r.measured is not None else "predicted"
        notes.append(f"the found network misses the {r.cost} target: {how} {value:,.4g} "
                     f"{r.unit} against {r.target:,.4g} {r.unit} "
                     f"(+{100 * (value / r.target - 1):.0f}%)")
    return notes
