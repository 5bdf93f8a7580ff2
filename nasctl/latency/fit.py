"""What cannot be timed unit by unit, fitted from whole networks (docs/latency.md).

Two things: (1) the parameter-free glue ONNX Runtime merges when copied (the ReLUs shared
by the ops reading a tensor, standalone node sums, concatenations with their layout
reorders, strided pools) and the fixed cost of one run: a cost per output element of each
kind (one run: a constant); (2) how much slower (or faster) timed units run inside a
network, whose working set leaves the caches the small timing graphs stay in: one factor.
Both by non-negative least squares of whole networks' measured latency on the sum of
their timed units and the fitted units' sizes per kind. (A factor per resolution fitted
the calibration networks better but not other networks: with 8-12 networks it set whole
resolutions to zero cost.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nasctl.nets.units import Unit

RUN_KIND = "run"


def kind_of(unit: Unit) -> str:
    """A fitted unit's kind: the first word of its key (relu, add, concat, run, ...)."""
    return unit.key.split()[0]


def size_of(unit: Unit) -> float:
    """What a fitted unit's cost is proportional to: output elements (one run: 1)."""
    if kind_of(unit) == RUN_KIND:
        return 1.0
    meta = copy.deepcopy(unit.build()).to("meta")
    with torch.device("meta"):
        out = meta(*(torch.zeros(1, *s) for s in unit.input_shapes))
    return float(math.prod(out.shape[1:]))


@dataclass(frozen=True)
class FitNetwork:
    """One whole network the fit used: measured, its timed units' sum, the prediction."""

    name: str
    measured_ms: float
    timed_ms: float
    predicted_ms: float

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


@dataclass(frozen=True)
class Fit:
    """``per_element_ms`` per fitted kind (``run``: ms per run); ``slowdown`` of timed
    units (in-network ms = timed ms * slowdown)."""

    per_element_ms: dict[str, float]
    slowdown: float
    networks: list[FitNetwork]

    def to_dict(self) -> dict[str, object]:
        return {"per_element_ms": self.per_element_ms, "slowdown": self.slowdown,
                "networks": [n.to_dict() for n in self.networks]}


@dataclass(frozen=True)
class Observed:
    """A whole network as the fit sees it: its measured latency and its units."""

    name: str
    measured_ms: float
    units: Sequence[Unit]


def fit(observed: Sequence[Observed], timed: Mapping[str, float],
        sizes: Mapping[str, float]) -> Fit:
    """Fit the fitted kinds' per-element costs and the timed units' slowdown.

    ``timed``: the timed units' ms by key; ``sizes``: the fitted units' sizes by key."""
    from scipy.optimize import nnls

    kinds = sorted({kind_of(u) for o in observed for u in o.units if u.key not in timed})
    columns = [("timed", ""), *(("kind", k) for k in kinds)]
    a = np.zeros((len(observed), len(columns)))
    totals = np.zeros(len(observed))
    for i, o in enumerate(observed):
        for unit in o.units:
            if unit.key in timed:
                totals[i] += timed[unit.key]
                a[i, 0] += timed[unit.key]
            else:
                a[i, columns.index(("kind", kind_of(unit)))] += sizes[unit.key]
    measured = np.asarray([o.measured_ms for o in observed])
    scale = np.where(a.max(axis=0, initial=0.0) > 0, a.max(axis=0, initial=0.0), 1.0)
    coef = (nnls(a / scale, measured)[0] / scale if len(observed)
            else np.array([1.0] + [0.0] * len(kinds)))
    predicted = a @ coef
    per_element = {k: float(c) for (what, k), c in zip(columns, coef, strict=True)
                   if what == "kind"}
    networks = [FitNetwork(o.name, round(o.measured_ms, 4), round(float(t), 4),
                           round(float(p), 4))
                for o, t, p in zip(observed, totals, predicted, strict=True)]
    return Fit(per_element, float(coef[0]), networks)
