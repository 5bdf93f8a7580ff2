"""Read a genotype from whatever a user hands us: a zoo name, a nasctl genotype file, an
NNI-style JSON dict, or a DARTS / FairDARTS ``Genotype(...)`` string (inline or in a file)."""

from __future__ import annotations

import json
from pathlib import Path

from nasctl.errors import GenotypeError
from nasctl.genotypes.convert import from_nni, parse_genotype_string
from nasctl.genotypes.genotype import Genotype
from nasctl.genotypes.io import read_genotype
from nasctl.genotypes.zoo import is_zoo_name, zoo_genotype, zoo_names


def read_any(source: str, name: str | None = None) -> Genotype:
    """Parse ``source`` as a zoo name, a file of any supported format, or a string."""
    stripped = source.strip()
    if not stripped.startswith(("Genotype(", "{")) and Path(source).exists():
        return _read_file(Path(source), name)
    if is_zoo_name(source):
        return zoo_genotype(source)
    if stripped.startswith(("Genotype(", "{")):
        try:
            return parse_genotype_string(stripped, name)
        except GenotypeError as exc:
            raise GenotypeError(f"genotype string: {exc}") from None
    raise GenotypeError(
        f"{source!r}: no such file, zoo genotype ({', '.join(zoo_names())}) or genotype string"
    )


def _read_file(path: Path, name: str | None) -> Genotype:
    if path.is_dir():
        raise GenotypeError(f"{path}: is a directory, expected a genotype file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"{path}: not a text file (binary data?)") from None
    if not text.strip():
        raise GenotypeError(f"{path}: the file is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    nasctl_like = isinstance(doc, dict) and ("format" in doc or "cells" in doc)
    broken_json = doc is None and text.lstrip().startswith(("{", "["))
    if nasctl_like or broken_json or isinstance(doc, list | int | float | str):
        return read_genotype(path)  # reads it, or says precisely what is wrong
    try:
        if isinstance(doc, dict) and any("/op_" in str(k) for k in doc):
            return from_nni(doc, name or path.name.split(".")[0])
        return parse_genotype_string(text, name or path.name.split(".")[0])
    except GenotypeError as exc:
        raise GenotypeError(f"{path}: {exc}") from None
