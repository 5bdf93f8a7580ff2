"""Options declared once, and the registries of search plugins.

A method, a search space and a cost each declare their settings as one frozen dataclass
whose fields are made with :func:`option` (type from the annotation, default, help, range
rule, flag). Everything else is derived from that declaration: the search command's flags
(:mod:`nasctl.cli.search`), coercion and range checks (:func:`make_options`), the values
recorded in config.json and the genotype's provenance (:func:`as_dict`), and the refusal
of a flag the chosen plugin does not declare.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from nasctl.errors import NasctlError
from nasctl.settings import Rule, coerce


def option(default: Any, help: str, rule: Rule | None = None, *, flag: str | None = None,
           aliases: tuple[str, ...] = (), short: str | None = None, runtime: bool = False,
           cli: bool = True) -> Any:
    """A declared setting: a dataclass field carrying its help, rule and flag names.
    ``runtime`` settings change how a run computes, not what, so a resumed run may change
    them; ``cli=False`` settings come from config files and ``--set`` only."""
    meta = {"help": help, "rule": rule, "flag": flag, "aliases": aliases, "short": short,
            "runtime": runtime, "cli": cli}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionSpec:
    """One declared setting, as read from its dataclass field."""

    name: str
    type: Any
    default: Any
    help: str
    rule: Rule | None
    flag: str
    aliases: tuple[str, ...]
    short: str | None
    runtime: bool
    cli: bool
    owner: str  # "--method fairdarts", "--space cell", "the latency cost"

    @property
    def is_bool(self) -> bool:
        return self.type is bool


@dataclass(frozen=True)
class NoOptions:
    """The declaration of a plugin without settings."""


def specs(declaration: type, owner: str) -> list[OptionSpec]:
    hints = typing.get_type_hints(declaration)
    out = []
    for f in dataclasses.fields(declaration):
        meta = f.metadata
        default = (f.default_factory() if f.default is dataclasses.MISSING  # type: ignore[misc,operator]
                   else f.default)
        out.append(OptionSpec(f.name, hints[f.name], default, meta.get("help", ""),
                              meta.get("rule"), meta.get("flag") or _flag(f.name),
                              tuple(meta.get("aliases", ())), meta.get("short"),
                              bool(meta.get("runtime")), meta.get("cli", True), owner))
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def make_options(declaration: type, values: Mapping[str, Any], owner: str) -> Any:
    """An instance of ``declaration`` from raw values (strings from ``--set``, TOML/JSON
    values, typed flags): every value coerced and range-checked, every problem in one line.
    A key the declaration does not have is refused, naming its flag."""
    known = {s.name: s for s in specs(declaration, owner)}
    unknown = [k for k in values if k not in known]
    if unknown:
        names = ", ".join(map(_flag, unknown))
        raise NasctlError(f"{names} do{'es' if len(unknown) == 1 else ''} not apply to {owner}")
    types = {name: s.type for name, s in known.items()}
    typed = {k: coerce(types, k, v, owner) for k, v in values.items()}
    problems = [p for k, v in typed.items() if known[k].rule is not None
                and (p := known[k].rule.problem(k, v)) is not None]  # type: ignore[union-attr]
    if problems:
        raise NasctlError(f"{owner}: " + "; ".join(problems))
    return declaration(**typed)


def as_dict(options: Any) -> dict[str, Any]:
    """The settings as JSON-able values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(options).items()}


class Plugin(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type]


P = TypeVar("P", bound=Plugin)


class Registry(Generic[P]):
    """Plugins of one kind (``--method``, ``--space``, the costs) by name. Built-in plugins
    are registered when :mod:`nasctl.search` is imported."""

    def __init__(self, kind: str, selected_by_flag: bool = True) -> None:
        self.kind = kind
        self.selected_by_flag = selected_by_flag
        self._classes: dict[str, type[P]] = {}

    def register(self, cls: type[P]) -> type[P]:
        self._classes[cls.name] = cls
        return cls

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[type[P]]:
        return iter(self._classes[n] for n in self.names())

    def cls(self, name: str) -> type[P]:
        try:
            return self._classes[name]
        except KeyError:
            raise NasctlError(f"unknown --{self.kind} {name!r} (known: "
                              f"{', '.join(self.names())})") from None

    def owner(self, name: str) -> str:
        return f"--{self.kind} {name}" if self.selected_by_flag else f"the {name} {self.kind}"

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> P:
        """The plugin ``name`` built with its declared options from ``options``."""
        cls = self.cls(name)
        declared = make_options(cls.Options, dict(options or {}), self.owner(name))
        return cls(declared)  # type: ignore[call-arg]

    def specs(self, name: str) -> list[OptionSpec]:
        return specs(self.cls(name).Options, self.owner(name))

    def all_specs(self) -> list[OptionSpec]:
        return [s for cls in self for s in specs(cls.Options, self.owner(cls.name))]
