"""The latency table file (``nasctl-latency-table`` version 1) and predictions from it.

A table holds one entry per unit of a deployment (:mod:`nasctl.nets.units`), under keys
naming everything the figures depend on (runtime and version, provider, precision,
threads, batch, CPU or GPU model, opset, nasctl version, the network settings). A table
is only used under other keys when the caller allows it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.errors import NasctlError

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment, Unit

FORMAT = "nasctl-latency-table"
VERSION = 1
KEY_NAMES = ("runtime", "runtime_version", "provider", "precision", "threads", "batch",
             "device", "opset", "nasctl_version", "settings")
METHODS = ("chain", "shared", "fitted")


class LatencyTableError(NasctlError):
    """A latency table is missing, malformed, foreign or lacks a unit."""


@dataclass(frozen=True)
class Entry:
    """One unit: ``ms`` is what predictions add (the timed median times the in-network
    slowdown, or the fitted cost); ``median_ms``/``p10_ms``/``p90_ms`` are the timing over
    rounds (the fitted cost for fitted units, which have ``runs`` 0)."""

    ms: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    method: str
    slowdown: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LatencyTable:
    keys: dict[str, Any]
    entries: dict[str, Entry]
    measurement: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    path: str = "<memory>"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created": self.created,
                "keys": self.keys, "measurement": self.measurement, "fit": self.fit,
                "entries": {k: e.to_dict() for k, e in self.entries.items()}}

    def ms(self, unit: Unit) -> float:
        """The unit's cost in a network, or LatencyTableError naming it."""
        entry = self.entries.get(unit.key)
        if entry is None:
            raise LatencyTableError(
                f"{self.path}: no entry for {unit.key!r} (the table is for "
                f"{describe_settings(self.keys['settings'])}); build a table at the "
                f"model's settings with nasctl latency table")
        return entry.ms

    def differences(self, expected_keys: dict[str, Any]) -> list[str]:
        """The keys whose values differ from ``expected_keys`` (``name: table != here``)."""
        out = []
        for name, want in expected_keys.items():
            have = self.keys.get(name)
            if have != want:
                if isinstance(have, dict) and isinstance(want, dict):
                    diff = [f"{k}={have.get(k)!r} != {want.get(k)!r}"
                            for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
                    out.append(f"{name} ({', '.join(diff)})")
                else:
                    out.append(f"{name}: {have!r} != {want!r}")
        return out

    def check_against(self, expected_keys: dict[str, Any], allow_foreign: bool) -> list[str]:
        """Refuse (one line naming the differences) a table measured under other keys,
        unless ``allow_foreign``; returns the differences."""
        diffs = self.differences(expected_keys)
        if diffs and not allow_foreign:
            raise LatencyTableError(
                f"{self.path}: measured under other keys ({'; '.join(diffs)}); measure a "
                f"table here or pass --allow-foreign-table")
        return diffs


def describe_settings(settings: dict[str, Any]) -> str:
    if settings.get("space") == "cell":
        return (f"the cell network on {settings.get('dataset')}, C={settings.get('C')}, "
                f"{settings.get('layers')} cells")
    return f"the {settings.get('space')} network at {settings.get('input_size')} px"


def _fail(path: str, what: str) -> LatencyTableError:
    return LatencyTableError(f"{path}: not a valid latency table ({what})")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def load_table(path: str | os.PathLike[str]) -> LatencyTable:
    """Read a table; anything that does not match the schema is one line naming the file."""
    name = os.fspath(path)
    p = Path(name)
    if not p.is_file():
        raise LatencyTableError(f"{name}: no such latency table")
    try:
        doc = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(name, f"not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _fail(name, f"format is not {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise _fail(name, f"version {doc.get('version')!r}, this nasctl reads {VERSION}")
    keys, entries = doc.get("keys"), doc.get("entries")
    if not isinstance(keys, dict) or missing_keys(keys):
        raise _fail(name, f"keys lack {', '.join(missing_keys(keys or {})) or 'an object'}")
    if not isinstance(keys["settings"], dict) or "space" not in keys["settings"]:
        raise _fail(name, "keys.settings names no space")
    if not isinstance(entries, dict) or not entries:
        raise _fail(name, "no entries")
    parsed = {}
    for key, e in entries.items():
        fields = ("ms", "median_ms", "p10_ms", "p90_ms", "runs", "method")
        if (not isinstance(e, dict) or any(f not in e for f in fields)
                or not all(_number(e[f]) for f in fields[:5]) or e["method"] not in METHODS):
            raise _fail(name, f"entry {key!r} needs non-negative {', '.join(fields[:5])} and "
                              f"a method ({', '.join(METHODS)})")
        parsed[key] = Entry(float(e["ms"]), float(e["median_ms"]), float(e["p10_ms"]),
                            float(e["p90_ms"]), int(e["runs"]), e["method"],
                            float(e.get("slowdown", 1.0)))
    return LatencyTable(keys=keys, entries=parsed, measurement=dict(doc.get("measurement") or {}),
                        fit=dict(doc.get("fit") or {}), created=str(doc.get("created", "")),
                        path=name)


def missing_keys(keys: dict[str, Any]) -> list[str]:
    return [k for k in KEY_NAMES if k not in keys]


@dataclass(frozen=True)
class Part:
    """The units of one kind in a prediction."""

    kind: str
    count: int
    ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    total_ms: float
    parts: list[Part]

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": self.total_ms, "parts": [p.to_dict() for p in self.parts]}


def predict(table: LatencyTable, deployment: Deployment, genotype: Genotype) -> Prediction:
    """The sum of the table's entries over the units of ``genotype``'s final network."""
    ms: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for unit in deployment.units(genotype):
        kind = unit.key.split()[0]
        ms[kind] += table.ms(unit)
        count[kind] += 1
    parts = [Part(k, count[k], round(v, 5)) for k, v in ms.most_common()]
    return Prediction(round(sum(ms.values()), 4), parts)
