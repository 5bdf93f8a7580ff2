"""Read a genotype from whatever a user hands us: a zoo name, a nasctl genotype file, an
NNI-style JSON dict, or a DARTS / FairDARTS ``Genotype(...)`` string (inline or in a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasctl.errors import GenotypeError
from nasctl.genotypes.convert import from_nni, parse_genotype_string
from nasctl.genotypes.genotype import Genotype
from nasctl.genotypes.io import genotype_from_dict, loads_strict, read_text
from nasctl.genotypes.limits import brief
from nasctl.genotypes.zoo import is_zoo_name, paper_card, zoo_genotype, zoo_names


def path_exists(source: str) -> bool:
    """Whether ``source`` names an existing path (False for text no path can be)."""
    try:
        return Path(source).exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def read_any(source: str, name: str | None = None) -> Genotype:
    """Parse ``source`` as a zoo name, a file of any supported format, or a string."""
    stripped = source.strip()
    if not stripped.startswith(("Genotype(", "{")) and path_exists(source):
        return _read_file(Path(source), name)
    if is_zoo_name(source):
        return zoo_genotype(source)
    if stripped.startswith(("Genotype(", "{")):
        try:
            return parse_genotype_string(stripped, name)
        except GenotypeError as exc:
            raise GenotypeError(f"genotype string: {exc}") from None
    card = paper_card(source)
    if card is not None and not card.has_genotype:
        raise GenotypeError(f"{source} is a paper card without a published genotype (its "
                            "figures are in `nasctl genotypes list`); nothing to build")
    raise GenotypeError(
        f"{brief(source, 300)}: no such file, zoo genotype ({', '.join(zoo_names())}) or "
        "genotype string"
    )


def _read_file(path: Path, name: str | None) -> Genotype:
    from nasctl.genotypes.graphml import genotype_from_graphml, looks_like_graphml

    text = read_text(path, "a genotype file")
    if looks_like_graphml(text):
        try:
            return genotype_from_graphml(text)
        except GenotypeError as exc:
            raise GenotypeError(f"{path}: {exc}") from None
    doc: Any = None
    try:
        doc = loads_strict(text)
    except GenotypeError as exc:
        if text.lstrip().startswith(("{", "[")):  # meant as JSON: say what is wrong with it
            raise GenotypeError(f"{path}: {exc}") from None
    nasctl_like = isinstance(doc, dict) and ("format" in doc or "cells" in doc)
    try:
        if nasctl_like or isinstance(doc, list | int | float | str):
            return genotype_from_dict(doc)  # reads it, or says precisely what is wrong
        if isinstance(doc, dict) and any("/op_" in str(k) for k in doc):
            return from_nni(doc, name or path.name.split(".")[0])
        if not text.lstrip().startswith("Genotype("):
            raise GenotypeError("not a genotype file: expected nasctl or NNI JSON, GraphML, "
                                "or a DARTS/FairDARTS Genotype(...) string")
        return parse_genotype_string(text, name or path.name.split(".")[0])
    except GenotypeError as exc:
        raise GenotypeError(f"{path}: {exc}") from None
