"""How well latency tables predict measured latency, against a MAC-proportional predictor.

Builds (or reuses) a table for the cell space at CIFAR-10 settings and for the mbconv
chain at ImageNet 224, then predicts and measures widely differing networks: the zoo,
random cell genotypes with skewed op mixes (all pools, all skip, all sep_conv_5x5, all
dil_conv_5x5, mixes; DARTS- and FairDARTS-style wiring) and random chains. The table's
calibration networks use other seeds (>= 10000) than these (< 10000). Reports, per space
and overall: mean absolute % error, worst error, share within +-10%, Spearman's rank
correlation with the measurement, and the same for ``ms = k * MACs`` with ``k`` fitted
by least squares on the same networks (per space).

    python benchmarks/latency_model.py [--quick] [--out latency_model.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasctl.genotypes import Genotype, load_genotype, zoo_names  # noqa: E402
from nasctl.genotypes.spaces import DARTS_OPS  # noqa: E402
from nasctl.latency.build import build_table, deployment_from_settings  # noqa: E402
from nasctl.latency.check import reference_network  # noqa: E402
from nasctl.latency.measure import MeasureSettings, Timer, randomize_batchnorm  # noqa: E402
from nasctl.latency.samples import (  # noqa: E402
    CELL_MIXES,
    CHAIN_MIXES,
    calibration_genotypes,
    random_cell_genotype,
    random_chain_genotype,
)
from nasctl.latency.table import LatencyTable, load_table, predict  # noqa: E402
from nasctl.nets.cell_units import CellDeployment  # noqa: E402
from nasctl.nets.chain_units import ChainDeployment  # noqa: E402
from nasctl.nets.counting import count_macs  # noqa: E402
from nasctl.nets.mbconv import PROXYLESS_S2, scaled  # noqa: E402
from nasctl.nets.units import Deployment  # noqa: E402


@dataclass
class Row:
    space: str
    name: str
    macs: int
    predicted_ms: float
    measured_ms: float
    measured_p10_ms: float
    measured_p90_ms: float
    measured_raw_ms: float
    host_speed: float
    mac_ms: float = 0.0

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def mac_error_pct(self) -> float:
        return 100.0 * (self.mac_ms - self.measured_ms) / self.measured_ms


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    err = 100.0 * (predicted - measured) / measured
    return {"mean_abs_pct": round(float(np.mean(np.abs(err))), 2),
            "worst_pct": round(float(err[np.argmax(np.abs(err))]), 2),
            "within_10pct": round(float(np.mean(np.abs(err) <= 10.0)), 3),
            "spearman": round(float(spearmanr(predicted, measured).statistic), 3),
            "networks": len(measured)}


def get_table(deployment: Deployment, path: Path, settings: MeasureSettings,
              calibration: int, reuse: bool) -> LatencyTable:
    if reuse and path.exists():
        return load_table(path)
    started = time.perf_counter()

    def progress(done: int, total: int, what: str) -> None:
        print(f"\r  [{time.perf_counter() - started:5.0f} s] {done}/{total} {what[:50]:50s}",
              end="", file=sys.stderr, flush=True)

    table = build_table(deployment, settings, path,
                        calibration_genotypes(deployment, calibration), progress)
    print(file=sys.stderr)
    return table


def measure_rows(space: str, deployment: Deployment, table: LatencyTable,
                 genotypes: list[Genotype], settings: MeasureSettings) -> list[Row]:
    rows = []
    size = deployment.input_shape[1]
    reference = reference_network(table, deployment)
    with Timer(settings) as timer:
        for i, genotype in enumerate(genotypes):
            net = deployment.network(genotype)
            randomize_batchnorm(net)
            macs = count_macs(net, size).convfc
            t = timer.time_network(net, deployment.input_shape, reference)
            row = Row(space, genotype.name or f"net{i}", macs,
                      predict(table, deployment, genotype).total_ms, t.median_ms, t.p10_ms,
                      t.p90_ms, t.raw_median_ms, t.host_speed)
            print(f"  {space} {row.name:28s} predicted {row.predicted_ms:8.3f} measured "
                  f"{row.measured_ms:8.3f} ({row.error_pct:+.1f}%; host x{row.host_speed:.2f})",
                  file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny settings")
    parser.add_argument("--out", default="latency_model.json")
    parser.add_argument("--tables", default="latency_tables", help="folder for the tables")
    parser.add_argument("--reuse-tables", action="store_true")
    parser.add_argument("--calibration", type=int, default=12)
    parser.add_argument("--random-cells", type=int, default=27)
    parser.add_argument("--random-chains", type=int, default=12)
    parser.add_argument("--seed-offset", type=int, default=0, help="first random seed")
    parser.add_argument("--no-zoo", action="store_true", help="random networks only")
    parser.add_argument("--spaces", default="cell,mbconv", help="comma list: cell, mbconv")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="only summarize the rows of earlier runs' JSON files")
    args = parser.parse_args()
    if args.merge:
        rows = [Row(**{k: v for k, v in r.items() if k not in ("error_pct", "mac_error_pct")})
                for path in args.merge for r in json.loads(Path(path).read_text())["rows"]]
        repredict(rows, Path(args.tables))
        report(rows, {"merged": args.merge, "tables": args.tables}, Path(args.out))
        return
    settings = MeasureSettings(runtime="ort", precision="fp32", threads=1, batch=1)
    tables = Path(args.tables)
    if args.quick:
        cell = CellDeployment(DARTS_OPS, "digits", channels=4, layers=3, num_nodes=4)
        chain = ChainDeployment(scaled(PROXYLESS_S2, 0.25, divisor=4), 32, 10,
                                dataset="digits")
        args.calibration, args.random_cells, args.random_chains = 2, 2, 2
        cell_zoo = ["DARTS_V2"]
        settings = MeasureSettings(rounds=2, runs=10)
    else:
        cell = CellDeployment(DARTS_OPS, "cifar10")
        chain = ChainDeployment(PROXYLESS_S2, 224, 1000)
        cell_zoo = [] if args.no_zoo else zoo_names()
    mixes, chain_mixes = list(CELL_MIXES), list(CHAIN_MIXES)
    cell_nets = [load_genotype(n) for n in cell_zoo] + [
        random_cell_genotype(DARTS_OPS, mixes[i % len(mixes)], i)
        for i in range(args.seed_offset, args.seed_offset + args.random_cells)]
    chain_nets = [random_chain_genotype(chain.layout, chain_mixes[i % len(chain_mixes)], i)
                  for i in range(args.seed_offset, args.seed_offset + args.random_chains)]
    rows: list[Row] = []
    spaces = args.spaces.split(",")
    for space, deployment, nets in (("cell", cell, cell_nets), ("mbconv", chain, chain_nets)):
        if space not in spaces:
            continue
        print(f"{space}: table", file=sys.stderr)
        table = get_table(deployment, tables / f"{space}.json", settings, args.calibration,
                          args.reuse_tables)
        rows += measure_rows(space, deployment, table, nets, settings)
    report(rows, settings.to_dict(), Path(args.out))


def repredict(rows: list[Row], tables: Path) -> None:
    """Predict saved measurements again with the tables in ``tables`` (after a refit)."""
    for space in ("cell", "mbconv"):
        subset = [r for r in rows if r.space == space]
        if not subset:
            continue
        table = load_table(tables / f"{space}.json")
        deployment = deployment_from_settings(table.keys["settings"])
        for r in subset:
            r.predicted_ms = predict(table, deployment, genotype_of(r.name, deployment)).total_ms


def genotype_of(name: str, deployment: Deployment) -> Genotype:
    """A benchmark network again from its name (a zoo name or random-MIX-SEED)."""
    if not name.startswith("random-"):
        return load_genotype(name)
    _, mix, seed = name.split("-")
    if isinstance(deployment, ChainDeployment):
        return random_chain_genotype(deployment.layout, mix, int(seed))
    return random_cell_genotype(DARTS_OPS, mix, int(seed))


def report(rows: list[Row], settings: dict[str, object], out: Path) -> None:
    """Print the summary table and write it with the rows to ``out``."""
    for space in ("cell", "mbconv"):  # ms = k * MACs, least squares per space
        subset = [r for r in rows if r.space == space]
        if subset:
            macs = np.array([r.macs for r in subset], dtype=float)
            measured = np.array([r.measured_ms for r in subset])
            k = float(macs @ measured / (macs @ macs))
            for r in subset:
                r.mac_ms = k * r.macs
    summary = {}
    for label, subset in (("cell", [r for r in rows if r.space == "cell"]),
                          ("mbconv", [r for r in rows if r.space == "mbconv"]), ("all", rows)):
        if not subset:
            continue
        measured = np.array([r.measured_ms for r in subset])
        summary[label] = {
            "table": scores(np.array([r.predicted_ms for r in subset]), measured),
            "macs": scores(np.array([r.mac_ms for r in subset]), measured)}
    print(f"{'networks':10s} {'predictor':10s} {'n':>3s} {'mean |err|':>10s} {'worst':>8s} "
          f"{'within 10%':>10s} {'spearman':>8s}")
    for label, both in summary.items():
        for predictor, s in both.items():
            print(f"{label:10s} {predictor:10s} {s['networks']:3d} {s['mean_abs_pct']:9.1f}% "
                  f"{s['worst_pct']:+7.1f}% {100 * s['within_10pct']:9.0f}% "
                  f"{s['spearman']:8.3f}")
    doc = {"settings": settings, "summary": summary,
           "rows": [{**asdict(r), "error_pct": round(r.error_pct, 2),
                     "mac_error_pct": round(r.mac_error_pct, 2)} for r in rows]}
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
