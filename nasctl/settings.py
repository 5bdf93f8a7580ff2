"""Typed settings shared by every run config: coercion of values from files and ``--set``,
range rules as data, and the resume rule.

A config is a frozen dataclass. :func:`coerce` turns a raw value (a string from ``--set``,
a TOML/JSON value) into the field's type; :func:`check` applies a table of :class:`Rule`
rows and reports every problem in one line; :func:`resume_changes` is the one rule for
``--resume`` (runtime-only settings may change, every other one must match).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nasctl.errors import NasctlError


@dataclass(frozen=True)
class Rule:
    """The allowed values of one setting: a range (``low``/``high``, each inclusive unless
    ``open_low``), or a set of ``choices``. ``None`` values pass when the field is optional.
    Floats must be finite."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] | None = None

    def problem(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        if self.choices is not None:
            return None if value in self.choices else (
                f"{key} must be one of {', '.join(self.choices)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} must be a finite number, got {value}"
        too_low = self.low is not None and (value <= self.low if self.open_low
                                            else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.open_high
                                              else value > self.high)
        if too_low or too_high:
            return f"{key} must be {self.describe()}, got {value!r}"
        return None

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        low = None if self.low is None else ("> " if self.open_low else ">= ") + _num(self.low)
        high = None if self.high is None else ("< " if self.open_high else "<= ") + _num(self.high)
        return " and ".join(p for p in (low, high) if p) or "any value"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# Sizes nasctl accepts, stated in every refusal: far above the papers' networks (C=36 or
# 48, 20 or 14 cells, 600 epochs) and below allocations that cannot succeed.
MAX_CHANNELS = 512
MAX_CELLS = 100
MAX_CLASSES = 100_000
MAX_EPOCHS = 100_000
MAX_BATCH = 8192
MAX_SEED = 2**32 - 1  # numpy's seed range

POSITIVE = Rule(low=0, open_low=True)
NON_NEGATIVE = Rule(low=0)
AT_LEAST_ONE = Rule(low=1)
UNIT_OPEN = Rule(low=0, high=1, open_low=True, open_high=True)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(fields: Mapping[str, Any], key: str, value: Any, where: str) -> Any:
    """``value`` as the type of setting ``key`` (``"none"`` for an optional one)."""
    if key not in fields:
        raise NasctlError(f"{where}: unknown setting {key!r} (known: {', '.join(fields)})")
    kind = fields[key]
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    args = typing.get_args(kind) if union else ()
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), kind) if union else kind
    base = typing.get_origin(base) or base
    listed = base in (tuple, list)  # "none" is an item of a list (the zero op), not None
    if value is None or (optional and not listed and isinstance(value, str)
                         and value.lower() in ("none", "null")):
        if optional:
            return None
        raise NasctlError(f"{where}: {key} cannot be empty")
    bad = NasctlError(f"{where}: {key} must be {getattr(base, '__name__', base)}, got {value!r}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise bad
    if base is int:
        if isinstance(value, (bool, float)):
            raise bad
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad from None
    if base is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if base in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise bad
        return tuple(i.strip() for i in items if i.strip())
    if base is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if not isinstance(value, str):
        raise bad
    return value


def coerce_all(fields: Mapping[str, Any], values: Mapping[str, Any],
               where: str) -> dict[str, Any]:
    return {key: coerce(fields, key, value, where) for key, value in values.items()}


def check(config: Any, rules: Mapping[str, Rule], what: str,
          extra: Iterable[str] = ()) -> None:
    """Raise one NasctlError listing every rule ``config`` breaks (plus ``extra``)."""
    problems = [p for key, rule in rules.items()
                if (p := rule.problem(key, getattr(config, key))) is not None]
    problems.extend(extra)
    if problems:
        raise NasctlError(f"bad {what} settings: " + "; ".join(problems))


def split_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["lr=0.1", "drop-path-on=node"]`` -> ``{"lr": "0.1", "drop_path_on": "node"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise NasctlError(f"--set {item!r}: expected KEY=VALUE")
        out[key] = value.strip()
    return out


def parse_assignments(items: Iterable[str], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``["lr=0.1", "drop_path_on=node"]`` -> typed values (for ``--set``)."""
    return {key: coerce(fields, key, value, "--set")
            for key, value in split_assignments(items).items()}


def resume_changes(saved: Any, given: Mapping[str, Any],
                   runtime_fields: Iterable[str]) -> list[str]:
    """The settings in ``given`` that differ from the ``saved`` config and may not change
    on resume, each as ``key=new (saved old)``."""
    runtime = set(runtime_fields)
    return [f"{k}={v!r} (saved {getattr(saved, k)!r})" for k, v in given.items()
            if k not in runtime and getattr(saved, k) != v]


def refuse_changes(changes: list[str]) -> None:
    if changes:
        raise NasctlError("--resume continues the saved run and cannot change "
                          + ", ".join(changes))


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
