"""Figures for a search run: per-edge weight trajectories, the FairDARTS sigmoid histogram
at start and end, and the two discovered cells. matplotlib is optional (``nasctl[plot]``):
without it no figure is written and a note says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasctl.genotypes import Genotype


def write_plots(folder: Path, history: list[dict[str, Any]], ops: list[str],
                edges: list[tuple[int, int]], method: str,
                genotype: Genotype) -> tuple[dict[str, str], list[str]]:
    """Write the figures into ``folder``; returns ({name: path}, notes)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, ["matplotlib is not installed: no plots (pip install 'nasctl[plot]')"]
    files: dict[str, str] = {}
    path = folder / "arch_weights.png"
    _trajectories(plt, history, ops, edges, path)
    files["plot_weights"] = str(path)
    if method == "fairdarts" and len(history) > 1:
        path = folder / "sigmoid_hist.png"
        _histogram(plt, history, path)
        files["plot_sigmoid_hist"] = str(path)
    notes = []
    try:
        from nasctl.genotypes.draw import draw_genotype

        files["plot_cells"] = str(draw_genotype(genotype, folder / "cells.png"))
    except ImportError as exc:
        notes.append(f"cells not drawn: {exc}")
    return files, notes


def _trajectories(plt: Any, history: list[dict[str, Any]], ops: list[str],
                  edges: list[tuple[int, int]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    cols = max((len(edges) + 1) // 2, 1)
    fig, axes = plt.subplots(4, cols, figsize=(2.2 * cols, 8.5), sharex=True, sharey=True,
                             squeeze=False)
    for c, cell in enumerate(("normal", "reduce")):
        for e, (src, dst) in enumerate(edges):
            ax = axes[2 * c + e // cols, e % cols]
            for k, op in enumerate(ops):
                ax.plot(epochs, [h[cell][e][k] for h in history], label=op, linewidth=1)
            ax.set_title(f"{cell} {src}->{dst}", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=5, loc="best")
    fig.supxlabel("epoch")
    fig.supylabel("op weight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _histogram(plt: Any, history: list[dict[str, Any]], path: Path) -> None:
    def flat(h: dict[str, Any]) -> list[float]:
        return [w for cell in ("normal", "reduce") for row in h[cell] for w in row]

    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = [i / 20 for i in range(21)]
    ax.hist(flat(history[0]), bins=bins, alpha=0.6, label=f"epoch {history[0]['epoch']}")
    ax.hist(flat(history[-1]), bins=bins, alpha=0.6, label=f"epoch {history[-1]['epoch']}")
    ax.set_xlabel("sigmoid(alpha)")
    ax.set_ylabel("ops")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
