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
    threshold = genotype.provenance.get("discretization", {}).get("threshold")
    path = folder / "arch_weights.png"
    _trajectories(plt, history, ops, edges, method, threshold, genotype, path)
    files["plot_weights"] = str(path)
    if method == "fairdarts" and len(history) > 1:
        path = folder / "sigmoid_hist.png"
        _histogram(plt, history, threshold, path)
        files["plot_sigmoid_hist"] = str(path)
    notes = []
    try:
        from nasctl.genotypes.draw import draw_genotype

        files["plot_cells"] = str(draw_genotype(genotype, folder / "cells.png"))
    except ImportError as exc:
        notes.append(f"cells not drawn: {exc}")
    return files, notes


def _node_name(node: int) -> str:
    from nasctl.genotypes.draw import INPUT_LABELS

    return INPUT_LABELS[node] if node < len(INPUT_LABELS) else str(node)


def _trajectories(plt: Any, history: list[dict[str, Any]], ops: list[str],
                  edges: list[tuple[int, int]], method: str, threshold: float | None,
                  genotype: Genotype, path: Path) -> None:
    """One panel per edge and cell (a row of panels per cell half), one line per op; the
    ops the genotype kept are drawn thick, the threshold dashed."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from nasctl.genotypes.draw import OP_COLORS

    epochs = [h["epoch"] for h in history]
    cols = max((len(edges) + 1) // 2, 1)
    rows = 2 * ((len(edges) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 2.2, 1.55 * rows + 1.2),
                             sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for c, cell in enumerate(("normal", "reduce")):
        kept = {(u, v, op) for u, v, op in genotype.cells[cell].edges(data="op")}
        for e, (src, dst) in enumerate(edges):
            ax = axes[c * rows // 2 + e // cols, e % cols]
            ax.set_visible(True)
            for k, op in enumerate(ops):
                on = (src, dst, op) in kept
                ax.plot(epochs, [h[cell][e][k] for h in history], color=OP_COLORS.get(op),
                        linewidth=2.4 if on else 0.9, alpha=1.0 if on else 0.75)
            if threshold is not None:
                ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
            ax.set_title(f"{cell}: {_node_name(src)} \u2192 {dst}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            ax.grid(alpha=0.25)
    for ax in axes[-1]:
        ax.tick_params(labelbottom=True)
    handles = [Line2D([], [], color=OP_COLORS.get(op), linewidth=2, label=op) for op in ops]
    handles.append(Line2D([], [], color="gray", linewidth=2.4, label="kept in genotype"))
    if threshold is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=0.8,
                              label=f"threshold {threshold:g}"))
    activation = "sigmoid" if method == "fairdarts" else "softmax"
    fig.suptitle(f"{method}: {activation}(alpha) per edge over the search "
                 f"(top: normal cell, bottom: reduce cell)", fontsize=11)
    fig.supxlabel("epoch")
    fig.supylabel(f"op weight, {activation}(alpha)", x=0.005)
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / (1.9 * cols + 2.2), 1))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _histogram(plt: Any, history: list[dict[str, Any]], threshold: float | None,
               path: Path) -> None:
    """The sigmoids of every op in both cells at the first and the last epoch."""
    def flat(h: dict[str, Any]) -> list[float]:
        return [w for cell in ("normal", "reduce") for row in h[cell] for w in row]

    first, last = history[0], history[-1]
    end = flat(last)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bins = [i / 20 for i in range(21)]
    start = flat(first)
    start_counts, _, _ = ax.hist(start, bins=bins, histtype="step", color="gray",
                                 linewidth=1.5, label=f"epoch {first['epoch']}")
    end_counts, _, _ = ax.hist(end, bins=bins, alpha=0.75, color="#1f77b4",
                               label=f"epoch {last['epoch']}")
    top = max(end_counts.max(), 1) * 1.15
    if start_counts.max() > top:  # an untrained start is one tall bar: say so, keep the scale
        peak = int(start_counts.argmax())
        ax.patches[0].set_label(f"epoch {first['epoch']} ({int(start_counts[peak])} of "
                                f"{len(start)} ops in {bins[peak]:.2f}-{bins[peak + 1]:.2f}, "
                                "off the scale)")
    ax.set_ylim(0, top)
    if threshold is not None:
        kept = sum(w >= threshold for w in end)
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1,
                   label=f"threshold {threshold:g} ({kept} of {len(end)} ops above)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("sigmoid(alpha)")
    ax.set_ylabel("ops (both cells)")
    ax.set_title("FairDARTS: the sigmoid of every op, first and last epoch")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=1,
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_cost_plot(folder: Path, history: list[dict[str, Any]],
                    costs: list[Any]) -> dict[str, str]:
    """``costs.png``: per cost with a target, the expectation under the mixture and the
    prediction of the network the rule picks, per epoch, against the target (and the
    found network's measurement). Without matplotlib, nothing (the search plots say so)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return {}
    shown = [c for c in costs if c.target is not None]
    records = [h for h in history if "costs" in h]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.6 * len(shown), 3.8), squeeze=False)
    for ax, cost in zip(axes[0], shown, strict=True):
        epochs = [h["epoch"] for h in records]
        scale = 1e6 if cost.unit == "MACs" else 1.0
        unit = "M MACs" if cost.unit == "MACs" else cost.unit
        for key, label, style in (("expected", "expected (mixture)", "-"),
                                  ("predicted", "discretized network (predicted)", "-o")):
            ax.plot(epochs, [h["costs"][cost.cost][key] / scale for h in records], style,
                    label=label, markersize=4)
        ax.axhline(cost.target / scale, color="black", linestyle="--", linewidth=1,
                   label=f"target {cost.target / scale:,.4g} {unit}")
        if cost.measured is not None:
            ax.plot([epochs[-1] if epochs else 0], [cost.measured / scale], "r*",
                    markersize=12, label=f"found network, measured {cost.measured:,.4g}")
        if cost.repair is not None and cost.repair.swaps:
            ax.plot([epochs[-1] if epochs else 0], [cost.predicted / scale], "gD",
                    label=f"after {len(cost.repair.swaps)} repair swaps")
        ax.set_title(f"{cost.cost} of the final network over the search", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = folder / "costs.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"plot_costs": str(path)}


def write_layer_plot(folder: Path, history: list[dict[str, Any]], choices: list[list[str]],
                     method: str, kept: list[str]) -> tuple[dict[str, str], list[str]]:
    """``arch_weights.png`` of a chain: one panel per searchable layer, one line per
    candidate over the epochs, the kept candidate drawn thick."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return {}, ["matplotlib is not installed: no plots (pip install 'nasctl[plot]')"]
    epochs = [h["epoch"] for h in history]
    cols = min(len(choices), 6)
    rows = (len(choices) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 1.5, 1.7 * rows + 1.2),
                             sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    palette = plt.get_cmap("tab10")
    for i, names in enumerate(choices):
        ax = axes[i // cols, i % cols]
        ax.set_visible(True)
        for k, name in enumerate(names):
            on = name == kept[i]
            ax.plot(epochs, [h["layers"][i][k] for h in history], color=palette(k % 10),
                    linewidth=2.4 if on else 0.9, label=name)
        ax.set_title(f"layer {i + 1}: {kept[i]}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.grid(alpha=0.25)
    from matplotlib.lines import Line2D

    names = max(choices, key=len)
    handles = [Line2D([], [], color=palette(k % 10), linewidth=1.5, label=name)
               for k, name in enumerate(names)]
    handles.append(Line2D([], [], color="gray", linewidth=2.4, label="kept"))
    fig.suptitle(f"{method}: candidate weights per layer over the search (kept: thick)",
                 fontsize=11)
    fig.supxlabel("epoch")
    fig.supylabel("candidate weight", x=0.005)
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / (2.2 * cols + 1.5), 1))
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    path = folder / "arch_weights.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"plot_weights": str(path)}, []
