"""Compare a network's counted parameters and MACs with the paper card of its genotype.

Two kinds of check per row:
- ``official``: our integer counts against the integers the official implementation builds
  (exact equality; a mismatch is a bug in our network and can never be explained away).
- ``published``: our counts against the paper's rounded figure. It passes when our figure,
  rounded or truncated to the published number of decimals, equals it (papers and READMEs
  do both). A mismatch the card documents is ``explained``, with the reason in the row.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

from nasctl.genotypes import Genotype, PaperCard, paper_card, zoo_genotype, zoo_names

Status = Literal["pass", "fail", "explained", "no-reference"]
_RANK: dict[str, int] = {"no-reference": 0, "pass": 1, "explained": 2, "fail": 3}


@dataclass
class Check:
    figure: str  # e.g. "cifar10_params_M" or "official cifar_params"
    expected: float | int
    ours: float | int
    status: Status
    convention: str = ""
    note: str = ""


@dataclass
class ValidationRow:
    name: str
    dataset: str
    status: Status
    params: int
    params_with_aux: int
    macs: int
    macs_all: int
    card: str | None = None
    checks: list[Check] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matches_published(ours: float, published: float) -> bool:
    """True when ``ours`` rounded or truncated to the published decimals equals it."""
    exponent = Decimal(repr(float(published))).normalize().as_tuple().exponent
    decimals = max(0, -int(exponent)) if isinstance(exponent, int) else 0
    scale = 10**decimals
    rounded = math.floor(ours * scale + 0.5) / scale
    truncated = math.floor(ours * scale) / scale
    return math.isclose(rounded, published) or math.isclose(truncated, published)


def find_card(genotype: Genotype) -> PaperCard | None:
    """The card for the genotype's name, else for a zoo genotype with the same cells."""
    if genotype.name and (card := paper_card(genotype.name)) and card.has_genotype:
        return card
    digest = genotype.content_hash()
    for name in zoo_names():
        if zoo_genotype(name).content_hash() == digest:
            return paper_card(name)
    return None


def validate_counts(name: str, dataset: str, params: int, params_with_aux: int, macs: int,
                    macs_all: int, card: PaperCard | None) -> ValidationRow:
    """Build the row for already-counted figures (the counting is the caller's: torch or ONNX)."""
    row = ValidationRow(name, dataset, "no-reference", params, params_with_aux, macs, macs_all)
    if card is None:
        row.note = "no paper card for this genotype: counts only"
        return row
    row.card = card.name
    # the official code's counts and the papers' figures are for these networks only: a
    # CIFAR-100 network (100 classes) is compared with no CIFAR-10 figure
    prefix = {"cifar10": "cifar", "imagenet": "imagenet"}.get(dataset)
    paper_prefix = dataset
    ours_exact = {} if prefix is None else {
        f"{prefix}_params": params,
        f"{prefix}_params_with_aux": params_with_aux,
        f"{prefix}_macs_convfc": macs,
    }
    for key, ours in ours_exact.items():
        if key in card.official_counts:
            expected = card.official_counts[key]
            row.checks.append(Check(
                f"official {key}", expected, ours, "pass" if ours == expected else "fail",
                note="" if ours == expected else "differs from the official implementation",
            ))
    params_key = f"{paper_prefix}_params_M"
    if params_key in card.reported:
        with_aux = card.params_include_aux
        ours_m = (params_with_aux if with_aux else params) / 1e6
        label = "with auxiliary head" if with_aux else "without auxiliary head"
        row.checks.append(_published(card, params_key, ours_m, label))
    macs_key = f"{paper_prefix}_macs_M"
    if macs_key in card.reported:
        convention = card.macs_convention.get(macs_key, "convfc")
        ours_m = (macs_all if convention == "all" else macs) / 1e6
        label = "conv+FC+BN+ReLU+pool (ptflops)" if convention == "all" else "conv+FC"
        row.checks.append(_published(card, macs_key, ours_m, label))
    if not row.checks:
        row.note = f"the paper card of {card.name} has no {dataset} figures"
        return row
    row.status = max((c.status for c in row.checks), key=lambda s: _RANK[s])
    explained = [c.note for c in row.checks if c.status == "explained"]
    failed = [c.figure for c in row.checks if c.status == "fail"]
    row.note = "; ".join(([f"FAILED: {', '.join(failed)}"] if failed else []) + explained)
    return row


def _published(card: PaperCard, key: str, ours_m: float, convention: str) -> Check:
    published = card.reported[key]
    if matches_published(ours_m, published):
        return Check(key, published, round(ours_m, 3), "pass", convention)
    if key in card.explained:
        return Check(key, published, round(ours_m, 3), "explained", convention,
                     card.explained[key])
    return Check(key, published, round(ours_m, 3), "fail", convention,
                 f"{ours_m:.3f}M does not round to the published {published}M")


def validate_genotype(genotype: Genotype, dataset: str = "cifar10") -> ValidationRow:
    """Count the final network of ``genotype`` at the dataset's standard settings and
    compare with its paper card."""
    import torch

    from nasctl.nets import build_network, dataset_settings
    from nasctl.nets.counting import count_macs, count_params

    with torch.device("meta"):  # counting needs shapes only: skip weight initialisation
        net = build_network(genotype, dataset=dataset, auxiliary=True)
    params = count_params(net)
    macs = count_macs(net, dataset_settings(dataset).input_size)
    return validate_counts(
        genotype.name or "(unnamed)", dataset, params.without_aux, params.total,
        macs.convfc, macs.all, find_card(genotype),
    )
