"""Search plots and cell drawings: real matplotlib figures written from a real history and
genotype, read back, and the cell drawing's edge labels checked for overlaps."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasctl.genotypes import load_genotype
from nasctl.genotypes.spaces import FAIRDARTS_OPS

plt = pytest.importorskip("matplotlib.pyplot")

EDGES = [(j, i + 2) for i in range(4) for j in range(i + 2)]


def _history(epochs: int) -> list[dict[str, object]]:
    """Sigmoids leaving 0.5 towards 0 or 1, edge by edge, as a FairDARTS search's do."""
    def cell(e: int, sign: int) -> list[list[float]]:
        return [[0.5 + sign * ((k + i) % 3 - 1) * 0.45 * e / epochs for k in range(7)]
                for i in range(14)]

    return [{"epoch": e, "normal": cell(e, 1), "reduce": cell(e, -1)} for e in range(epochs + 1)]


def test_search_plots_are_written_and_readable(tmp_path: Path) -> None:
    from nasctl.search.plots import write_plots

    genotype = load_genotype("FairDARTS_a")
    genotype.provenance["discretization"] = {"threshold": 0.85}
    files, notes = write_plots(tmp_path, _history(3), list(FAIRDARTS_OPS), EDGES, "fairdarts",
                               genotype)
    assert notes == []
    assert set(files) == {"plot_weights", "plot_sigmoid_hist", "plot_cells"}
    for path in files.values():
        image = plt.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image[..., :3].std() > 0.05  # not a blank canvas


def test_darts_search_has_no_sigmoid_histogram(tmp_path: Path) -> None:
    from nasctl.search.plots import write_plots

    files, _ = write_plots(tmp_path, _history(2), list(FAIRDARTS_OPS), EDGES, "darts",
                           load_genotype("DARTS_V2"))
    assert "plot_sigmoid_hist" not in files and Path(files["plot_weights"]).exists()


@pytest.mark.parametrize("name", ["DARTS_V2", "FairDARTS_a", "FairDARTS_b", "PDARTS"])
def test_cell_labels_sit_apart_and_inputs_read_as_math(name: str) -> None:
    from nasctl.genotypes.draw import INPUT_LABELS, _draw_cell

    genotype = load_genotype(name)
    for cell_name in ("normal", "reduce"):
        fig, ax = plt.subplots(figsize=(9, 3.7))
        labels = _draw_cell(ax, genotype.cells[cell_name], cell_name)
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert len(labels) == genotype.cells[cell_name].number_of_edges()
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1:]), (name, cell_name,
                                                                     labels[i].get_text())
        texts = {t.get_text() for t in ax.texts}
        assert set(INPUT_LABELS) <= texts and "c_{k-2}" not in texts
        plt.close(fig)


def test_draw_writes_png(tmp_path: Path) -> None:
    from nasctl.genotypes.draw import draw_genotype

    out = draw_genotype(load_genotype("FairDARTS_a"), tmp_path / "cells.png")
    assert plt.imread(out).shape[2] in (3, 4)


def test_cells_drawing_has_a_legend_and_names_a_fallback(tmp_path: Path) -> None:
    from nasctl.genotypes import Genotype
    from nasctl.genotypes.draw import draw_genotype

    g = load_genotype("DARTS_V2")
    fallback = Genotype(g.cells, name="fb", provenance={
        "discretization": {"fallback_strongest_per_node": ["reduce"]}})
    out = draw_genotype(fallback, tmp_path / "cells.png")
    assert plt.imread(out).shape[2] in (3, 4)
