"""Published genotypes and their paper cards (package data, transcribed from the papers
and the official repositories; see each card's ``source``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from nasctl.errors import GenotypeError
from nasctl.genotypes.convert import from_darts, from_fairdarts
from nasctl.genotypes.genotype import Genotype


@dataclass(frozen=True)
class PaperCard:
    """What a paper published about one architecture, and how to compare against it."""

    name: str
    source: str
    reported: dict[str, Any]
    official_counts: dict[str, int] = field(default_factory=dict)
    params_include_aux: bool = False
    macs_convention: dict[str, str] = field(default_factory=dict)
    explained: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    has_genotype: bool = True


@cache
def _data() -> dict[str, Any]:
    text = resources.files("nasctl.genotypes").joinpath("zoo.json").read_text()
    return json.loads(text)


def _entries() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _data()["genotypes"]}


def zoo_names() -> list[str]:
    """Names of the zoo genotypes, in the zoo's order."""
    return [e["name"] for e in _data()["genotypes"]]


def _canonical(name: str, names: list[str]) -> str | None:
    folded = name.strip().lower().replace("-", "_")
    return next((n for n in names if n.lower() == folded), None)


def is_zoo_name(name: str) -> bool:
    return _canonical(name, zoo_names()) is not None


def zoo_genotype(name: str) -> Genotype:
    key = _canonical(name, zoo_names())
    if key is None:
        raise GenotypeError(f"no zoo genotype {name!r}; known: {', '.join(zoo_names())}")
    entry = _entries()[key]
    convert = from_fairdarts if entry["format"].startswith("fairdarts") else from_darts
    genotype = convert(entry, name=key)
    genotype.provenance = {"source": entry["source"], "zoo": True}
    return genotype


def paper_card(name: str) -> PaperCard | None:
    """The card for a zoo genotype or a genotype-less paper entry (iDARTS), else None."""
    cards = {c["name"]: c for c in _data()["cards_without_genotype"]}
    key = _canonical(name, zoo_names() + list(cards))
    if key is None:
        return None
    if key in cards:
        c = cards[key]
        return PaperCard(
            c["name"], c["source"], c["reported"], notes=c["notes"], has_genotype=False
        )
    e = _entries()[key]
    return PaperCard(
        name=e["name"],
        source=e["source"],
        reported=e["reported"],
        official_counts=e["official_implementation_counts"],
        params_include_aux=e["params_include_aux"],
        macs_convention=e["macs_convention"],
        explained=e["explained"],
        notes=e["notes"],
    )


def all_cards() -> list[PaperCard]:
    names = zoo_names() + [c["name"] for c in _data()["cards_without_genotype"]]
    return [card for n in names if (card := paper_card(n)) is not None]
