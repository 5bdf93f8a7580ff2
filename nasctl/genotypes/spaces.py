"""Search-space vocabularies (torch-free, so genotype files validate without torch)."""

from __future__ import annotations

# DARTS order (Liu et al., 2019). FairDARTS drops "none": its threshold prunes instead.
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
FAIRDARTS_OPS: tuple[str, ...] = DARTS_OPS[1:]

# Ops a final DARTS-cell network can build ("none" is a zero op; 7x7 variants are in the
# official op table, so genotypes from related work that use them still load).
CELL_OPS: frozenset[str] = frozenset(DARTS_OPS) | {"sep_conv_7x7", "conv_7x1_1x7"}

DARTS_CELL = "darts-cell"
CELL_NAMES: tuple[str, ...] = ("normal", "reduce")
NUM_INPUTS = 2  # node 0 = output of cell k-2, node 1 = output of cell k-1
