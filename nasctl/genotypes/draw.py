"""Draw both cells of a genotype to PNG or SVG (matplotlib, an optional extra)."""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx

from nasctl.errors import NasctlError
from nasctl.genotypes.genotype import Genotype, intermediate_nodes
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL

_OP_COLORS = {
    "sep_conv_3x3": "#1f77b4", "sep_conv_5x5": "#17becf", "sep_conv_7x7": "#aec7e8",
    "dil_conv_3x3": "#2ca02c", "dil_conv_5x5": "#98df8a", "max_pool_3x3": "#d62728",
    "avg_pool_3x3": "#ff7f0e", "skip_connect": "#7f7f7f", "none": "#c7c7c7",
    "conv_7x1_1x7": "#9467bd",
}


def draw_genotype(genotype: Genotype, path: str | os.PathLike[str]) -> Path:
    """Write a figure of the normal and reduce cells; the format follows the suffix."""
    out = Path(path)
    if genotype.search_space != DARTS_CELL:
        raise NasctlError(f"drawing supports darts-cell genotypes; this one is "
                          f"{genotype.search_space} (`nasctl genotypes show` lists its layers)")
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise NasctlError(f"{out}: draw writes .png, .svg or .pdf files")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NasctlError("drawing needs matplotlib: pip install 'nasctl[plot]'") from None
    steps = max(len(intermediate_nodes(genotype.cells[c])) for c in CELL_NAMES)
    fig, axes = plt.subplots(1, 2, figsize=(5.5 + 1.6 * steps, 4.8))
    for ax, cell_name in zip(axes, CELL_NAMES, strict=True):
        _draw_cell(ax, genotype.cells[cell_name], f"{cell_name} cell")
    fig.suptitle(genotype.name or "genotype", fontsize=13)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=150)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _positions(cell: nx.MultiDiGraph) -> dict[int | str, tuple[float, float]]:
    nodes = intermediate_nodes(cell)
    pos: dict[int | str, tuple[float, float]] = {0: (0.0, 0.8), 1: (0.0, 0.2)}
    for i, node in enumerate(nodes):
        pos[node] = (1.0 + i, 0.5 + (0.22 if i % 2 else -0.22))
    pos["out"] = (1.0 + len(nodes), 0.5)
    return pos


def _draw_cell(ax: object, cell: nx.MultiDiGraph, title: str) -> None:
    pos = _positions(cell)
    concat = set(cell.graph["concat"])
    pairs: dict[tuple[int, int], int] = {}
    for src, dst, _key, op in sorted(cell.edges(keys=True, data="op")):
        k = pairs.get((src, dst), 0)
        pairs[(src, dst)] = k + 1
        rad = 0.15 + 0.25 * k if k else (0.12 if dst - src > 1 else 0.0)
        _arrow(ax, pos[src], pos[dst], _OP_COLORS.get(op, "black"), rad, op)
    for node in concat:
        _arrow(ax, pos[node], pos["out"], "#bbbbbb", 0.0, None)
    for node, (x, y) in pos.items():
        if node == "out":
            label, face = "c_{k}", "#fff2b3"
        elif node in (0, 1):
            label, face = ("c_{k-2}", "c_{k-1}")[int(node)], "#cfe8ff"
        else:
            live = cell.in_degree(node) > 0
            label, face = str(node), "#ffffff" if live else "#eeeeee"
        ax.text(x, y, label, ha="center", va="center", fontsize=10, zorder=3,  # type: ignore[attr-defined]
                bbox={"boxstyle": "round,pad=0.35", "fc": face, "ec": "#444444"})
    ax.set_title(title)  # type: ignore[attr-defined]
    ax.set_xlim(-0.5, max(x for x, _y in pos.values()) + 0.5)  # type: ignore[attr-defined]
    ax.set_ylim(-0.05, 1.05)  # type: ignore[attr-defined]
    ax.axis("off")  # type: ignore[attr-defined]


def _arrow(ax: object, a: tuple[float, float], b: tuple[float, float], color: str, rad: float,
           label: str | None) -> None:
    ax.annotate("", xy=b, xytext=a, zorder=1,  # type: ignore[attr-defined]
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6,
                            "shrinkA": 14, "shrinkB": 14,
                            "connectionstyle": f"arc3,rad={rad}"})
    if label:
        # midpoint of matplotlib's arc3 quadratic Bezier
        dx, dy = b[0] - a[0], b[1] - a[1]
        mx, my = (a[0] + b[0]) / 2 + 0.5 * rad * dy, (a[1] + b[1]) / 2 - 0.5 * rad * dx
        ax.text(mx, my, label, fontsize=7, color=color, ha="center", va="center",  # type: ignore[attr-defined]
                zorder=2, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                                "alpha": 0.85})
