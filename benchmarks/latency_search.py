"""Latency-aware search, end to end through the CLI (issue 18's acceptance run).

Per space: build (or reuse) a latency table of the deployed network on ONNX Runtime CPU,
1 thread, batch 1; predict the zoo (cell) or extreme chains (mbconv) to find the fastest
and slowest networks; run the same small FairDARTS search on digits with a target between
them and without one; report target, predicted and measured latency of each found
network. Prints a table and writes JSON.

    python benchmarks/latency_search.py --out runs/latency-search          # both spaces
    python benchmarks/latency_search.py --spaces cell --epochs 2 --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS = {
    "cell": {"table": ["--space", "cell", "--dataset", "cifar10"],
             "search": ["--space", "cell", "-C", "8", "--layers", "5"]},
    "mbconv": {"table": ["--space", "mbconv", "--dataset", "imagenet"],
               "search": ["--space", "mbconv"]},
}
EXTREME_CHAINS = ("mbconv_k3_e3", "mbconv_k7_e6")


def nasctl(*args: str) -> Any:
    """Run the CLI; its JSON document, or exit with its one-line error."""
    proc = subprocess.run([sys.executable, "-m", "nasctl", *args], capture_output=True,
                          text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"nasctl {' '.join(args)}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def extremes(space: str, table: Path, work: Path) -> dict[str, float]:
    """Predicted ms of the networks that bracket the space at the table's settings."""
    if space == "cell":
        from nasctl.genotypes import zoo_names

        rows = nasctl("latency", "predict", *zoo_names(), "--table", str(table), "--json")
        return {r["model"]: r["predicted_ms"] for r in rows}
    from nasctl.genotypes import write_genotype
    from nasctl.nets.mbconv import PROXYLESS_S2, chain_genotype, searchable_slots

    files = []
    for op in EXTREME_CHAINS:
        ops = [op] * len(searchable_slots(PROXYLESS_S2))
        path = work / f"all_{op}.genotype.json"
        write_genotype(chain_genotype(PROXYLESS_S2, ops, f"all_{op}"), path)
        files.append(str(path))
    rows = nasctl("latency", "predict", *files, "--table", str(table), "--json")
    return {Path(r["model"]).name.split(".")[0]: r["predicted_ms"] for r in rows}


def search(space: str, table: Path, target: float | None, out: Path, args: Any) -> dict:
    flags = [*SETTINGS[space]["search"], "--dataset", "digits", "--method", "fairdarts",
             "--batch-size", "16", "--epochs", str(args.epochs), "--lr", "0.025",
             "--arch-lr", "0.1", "--seed", str(args.seed), "--latency-table", str(table),
             "--out", str(out), "--json"]
    if args.steps:
        flags += ["--steps-per-epoch", str(args.steps)]
    if target is not None:
        flags += ["--latency-target", f"{target:.4f}"]
    start = time.perf_counter()
    summary = nasctl("search", *flags)
    (latency,) = [c for c in summary["costs"] if c["cost"] == "latency"]
    return {"target_ms": target, "predicted_ms": latency["predicted"],
            "measured_ms": latency["measured"], "error_pct": latency["error_pct"],
            "meets_target": latency["meets_target"],
            "repair_swaps": len((latency.get("repair") or {}).get("swaps") or []),
            "expected_ms": latency["expected"], "genotype": str(out / "genotype.json"),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/latency-search"))
    parser.add_argument("--spaces", default="cell,mbconv")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=0, help="steps per epoch (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for space in args.spaces.split(","):
        table = args.out / f"{space}.table.json"
        if not table.exists():
            quick = ["--rounds", "3", "--calibration", "4"] if args.quick else []
            nasctl("latency", "table", *SETTINGS[space]["table"], "--runtime", "ort",
                   "--threads", "1", *quick, "--out", str(table), "--json")
        bracket = extremes(space, table, args.out)
        fastest, slowest = min(bracket.values()), max(bracket.values())
        target = (fastest + slowest) / 2
        aimed = search(space, table, target, args.out / f"{space}-target", args)
        free = search(space, table, None, args.out / f"{space}-free", args)
        results[space] = {"bracket_ms": bracket, "target_ms": target, "with_target": aimed,
                          "without_target": free}
        print(f"\n{space}: zoo/extremes predicted {fastest:.2f}-{slowest:.2f} ms, target "
              f"{target:.2f} ms")
        print(f"{'search':<16}{'predicted':>11}{'measured':>10}{'error':>8}{'swaps':>7}"
              f"{'meets':>7}")
        for name, row in (("with target", aimed), ("without target", free)):
            measured = row["measured_ms"]
            error = row["error_pct"]
            print(f"{name:<16}{row['predicted_ms']:>10.2f} "
                  f"{measured if measured is not None else float('nan'):>9.2f} "
                  f"{error if error is not None else float('nan'):>+7.1f}%"
                  f"{row['repair_swaps']:>7}{str(row['meets_target']):>7}")
    (args.out / "latency_search.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'latency_search.json'}")


if __name__ == "__main__":
    main()
