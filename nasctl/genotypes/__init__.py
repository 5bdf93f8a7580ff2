"""Genotype graphs: the one thing that crosses stage boundaries. Importing this package
does not import torch."""

from __future__ import annotations

import os

from nasctl.errors import GenotypeError
from nasctl.genotypes.convert import (
    from_darts,
    from_fairdarts,
    from_nni,
    parse_genotype_string,
    to_darts,
    to_fairdarts,
    to_nni,
)
from nasctl.genotypes.genotype import Genotype, cell_inputs, intermediate_nodes, live_nodes
from nasctl.genotypes.io import read_genotype, write_genotype, write_graphml
from nasctl.genotypes.limits import brief, printable
from nasctl.genotypes.sources import path_exists
from nasctl.genotypes.zoo import PaperCard, is_zoo_name, paper_card, zoo_genotype, zoo_names


def load_genotype(path_or_name: str | os.PathLike[str]) -> Genotype:
    """Load a genotype file, or a zoo genotype by name (``"DARTS_V2"``)."""
    text = os.fspath(path_or_name)
    if path_exists(text):
        return read_genotype(text)
    if is_zoo_name(text):
        return zoo_genotype(text)
    if text.endswith(".json") or os.sep in text:
        raise GenotypeError(f"{printable(text)}: no such file")
    raise GenotypeError(
        f"{brief(text, 300)} is neither a file nor a zoo genotype (zoo: {', '.join(zoo_names())})"
    )


save_genotype = write_genotype

__all__ = [
    "Genotype",
    "GenotypeError",
    "PaperCard",
    "cell_inputs",
    "from_darts",
    "from_fairdarts",
    "from_nni",
    "intermediate_nodes",
    "live_nodes",
    "load_genotype",
    "paper_card",
    "parse_genotype_string",
    "read_genotype",
    "save_genotype",
    "to_darts",
    "to_fairdarts",
    "to_nni",
    "write_genotype",
    "write_graphml",
    "zoo_genotype",
    "zoo_names",
]
