"""Draw both cells of a genotype to PNG or SVG (matplotlib, an optional extra)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import networkx as nx

from nasctl.errors import NasctlError
from nasctl.genotypes.genotype import Genotype, intermediate_nodes
from nasctl.genotypes.spaces import CELL_NAMES, DARTS_CELL

# One colour per op, shared with the search plots.
# One hue per op, apart enough to tell the 7 DARTS ops at a glance (Okabe-Ito based):
# kernel sizes of one family are different hues, not shades of one.
OP_COLORS = {
    "sep_conv_3x3": "#0072B2", "sep_conv_5x5": "#CC79A7", "sep_conv_7x7": "#17becf",
    "dil_conv_3x3": "#009E73", "dil_conv_5x5": "#E69F00", "max_pool_3x3": "#D55E00",
    "avg_pool_3x3": "#8c564b", "skip_connect": "#000000", "none": "#999999",
    "conv_7x1_1x7": "#7b3294",
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
    from matplotlib.patches import Patch

    steps = max(len(intermediate_nodes(genotype.cells[c])) for c in CELL_NAMES)
    fig, axes = plt.subplots(2, 1, figsize=(2.6 + 1.7 * steps, 7.9))
    fallback = genotype.provenance.get("discretization", {}).get(
        "fallback_strongest_per_node", [])
    for ax, cell_name in zip(axes, CELL_NAMES, strict=True):
        title = f"{cell_name} cell"
        if cell_name in fallback:  # the rule kept nothing here: say what decided instead
            title += " (fallback: no op reached the rule, the strongest op per node kept)"
        _draw_cell(ax, genotype.cells[cell_name], title)
    fig.suptitle(genotype.name or "genotype", fontsize=13)
    legend = [Patch(fc=face, ec="#444444", label=label) for face, label in NODE_KINDS]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=150)
    plt.close(fig)
    os.replace(tmp, out)
    return out


# Node faces, and what they mean (the figure's legend).
INPUT_FACE, NODE_FACE, DEAD_FACE, OUTPUT_FACE = "#cfe8ff", "#ffffff", "#eeeeee", "#fff2b3"
NODE_KINDS = ((INPUT_FACE, "cell input (previous cells)"), (NODE_FACE, "node"),
              (DEAD_FACE, "node without inputs (computes nothing)"),
              (OUTPUT_FACE, "cell output (concat)"))
# Node names as the DARTS paper writes them: the two previous cells' outputs and this one's.
INPUT_LABELS = ("$c_{k-2}$", "$c_{k-1}$")
OUTPUT_LABEL = "$c_{k}$"
_X_STEP = 1.7  # data units between node columns; the axes use an equal aspect
# Where along an edge its label may sit (Bezier parameter), in order of preference.
_LABEL_POSITIONS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85)
_RADS = (0.1, 0.16, 0.22, 0.3, 0.4, 0.5, 0.65)  # edge curvatures tried, straightest first
_CLEARANCE = 0.33  # how far an edge stays from the centre of a node it does not touch


def _positions(cell: nx.MultiDiGraph) -> dict[int | str, tuple[float, float]]:
    nodes = intermediate_nodes(cell)
    pos: dict[int | str, tuple[float, float]] = {0: (0.0, 1.0), 1: (0.0, -1.0)}
    for i, node in enumerate(nodes):
        pos[node] = (_X_STEP * (i + 1), 0.45 if i % 2 else -0.45)
    pos["out"] = (_X_STEP * (len(nodes) + 1), 0.0)
    return pos


def _bend(a: tuple[float, float], b: tuple[float, float], upwards: bool,
          obstacles: list[tuple[float, float]], used: list[float]) -> float:
    """Curvature (matplotlib arc3 ``rad``) for an edge from a to b: the straightest that
    keeps clear of every other node and of the parallel edges already drawn (``used``),
    bowing upwards first when ``upwards``."""
    first = -1.0 if upwards else 1.0  # arc3: a negative rad bows a left-to-right edge up
    candidates = [0.0] + [side * r for r in _RADS for side in (first, -first)]
    for rad in candidates:
        if any(abs(rad - u) < 0.12 for u in used):
            continue
        points = [_on_arc(a, b, rad, i / 24) for i in range(1, 24)]
        if all(math.dist(p, o) >= _CLEARANCE for p in points for o in obstacles):
            return rad
    return next(r for r in candidates if all(abs(r - u) >= 0.12 for u in used))


def _draw_cell(ax: Any, cell: nx.MultiDiGraph, title: str) -> list[Any]:
    """Draw one cell; returns the edge-label artists (each placed on its own edge, moved
    along it until it overlaps no node and no other label)."""
    pos = _positions(cell)
    ax.set_aspect("equal")
    ax.set_xlim(-0.7, pos["out"][0] + 0.7)
    ax.set_ylim(-1.9, 1.9)
    ax.axis("off")
    ax.set_title(title)
    nodes = []
    for node, (x, y) in pos.items():
        if node == "out":
            label, face = OUTPUT_LABEL, OUTPUT_FACE
        elif node in (0, 1):
            label, face = INPUT_LABELS[int(node)], INPUT_FACE
        else:
            label, face = str(node), NODE_FACE if cell.in_degree(node) > 0 else DEAD_FACE
        nodes.append(ax.text(x, y, label, ha="center", va="center", fontsize=11, zorder=4,
                             bbox={"boxstyle": "round,pad=0.35", "fc": face, "ec": "#444444"}))
    bends: dict[tuple[int | str, int | str], list[float]] = {}

    def bend(src: int | str, dst: int | str) -> float:
        obstacles = [xy for n, xy in pos.items() if n not in (src, dst)]
        used = bends.setdefault((src, dst), [])
        used.append(_bend(pos[src], pos[dst], src == 0 or pos[src][1] > 0, obstacles, used))
        return used[-1]

    for node in cell.graph["concat"]:
        _arrow(ax, pos[node], pos["out"], "#bbbbbb", bend(node, "out"))
    edges = []
    for src, dst, op in sorted(cell.edges(data="op")):
        rad = bend(src, dst)
        color = OP_COLORS.get(op, "black")
        _arrow(ax, pos[src], pos[dst], color, rad)
        edges.append((pos[src], pos[dst], rad, op, color))
    renderer = ax.figure.canvas.get_renderer()
    taken = [t.get_window_extent(renderer) for t in nodes]
    # every edge as points in display space: a label must not sit on another edge (a
    # crossing), only on its own
    paths = [ax.transData.transform([_on_arc(a, b, rad, i / 40) for i in range(41)])
             for a, b, rad, _op, _c in edges]
    labels = []
    for k, (a, b, rad, op, color) in enumerate(edges):
        text = ax.text(0, 0, op, fontsize=7.5, color=color, ha="center", va="center", zorder=3,
                       bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": color,
                             "lw": 0.6})
        others = [p for j, p in enumerate(paths) if j != k]
        best = None
        for t in _LABEL_POSITIONS:
            text.set_position(_on_arc(a, b, rad, t))
            box = text.get_window_extent(renderer)
            if any(box.overlaps(other) for other in taken):
                continue
            if not any(box.contains(x, y) for p in others for x, y in p):
                best = None
                break
            best = best or t  # clear of nodes and labels, though on a crossing
        if best is not None:
            text.set_position(_on_arc(a, b, rad, best))
        taken.append(text.get_window_extent(renderer))
        labels.append(text)
    return labels


def _on_arc(a: tuple[float, float], b: tuple[float, float], rad: float,
            t: float) -> tuple[float, float]:
    """The point at parameter ``t`` of matplotlib's arc3 quadratic Bezier from a to b
    (exact in data units because the axes have an equal aspect)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    cx, cy = (a[0] + b[0]) / 2 + rad * dy, (a[1] + b[1]) / 2 - rad * dx
    u = 1 - t
    return (u * u * a[0] + 2 * u * t * cx + t * t * b[0],
            u * u * a[1] + 2 * u * t * cy + t * t * b[1])


def _arrow(ax: Any, a: tuple[float, float], b: tuple[float, float], color: str,
           rad: float) -> None:
    ax.annotate("", xy=b, xytext=a, zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6,
                            "shrinkA": 15, "shrinkB": 15,
                            "connectionstyle": f"arc3,rad={rad}"})
