"""Batch-1 latency of DARTS_V2 and FairDARTS_a at CIFAR settings (C=36, 20 cells) in
PyTorch eager and ONNX Runtime CPU, against the compute floor of this machine.

Rows per genotype and thread count:
- torch eager (the reference network, eval mode);
- ORT CPU on nasctl's export (`nasctl export`: dynamo exporter, BN folded, no stray ops);
- ORT CPU on a plain TorchScript-exporter ONNX of the same network (the issue's
  reference configuration for the official DARTS network), measured here, on the same
  machine, in the same process;
- the compute floor: conv+FC MACs over the peak fp32 multiply-add rate measured with a
  large matmul at the same thread count.

    python benchmarks/deploy_latency.py [--threads 1,2] [--runs 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GENOTYPES = ("DARTS_V2", "FairDARTS_a")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "deploy_latency.json"


def _plain_torchscript_onnx(net: Any, path: Path) -> None:
    """What the issue's 13 ms reference used: torch.onnx.export(dynamo=False), defaults."""
    import contextlib
    import io
    import warnings

    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"])


def bench_genotype(name: str, threads_list: list[int], runs: int, tmp: Path,
                   peaks: dict[int, float]) -> list[dict[str, Any]]:
    import numpy as np

    from nasctl.deploy.bench import measure
    from nasctl.deploy.inputs import sample_images
    from nasctl.deploy.parity import compare_outputs, tolerance_for
    from nasctl.deploy.runtimes import Artifacts, make_runtime
    from nasctl.export.onnx_export import export_onnx
    from nasctl.export.source import load_model_source
    from nasctl.nets.counting import count_macs

    source = load_model_source(name, dataset="cifar10")
    macs = count_macs(source.net, 32).convfc
    t0 = time.perf_counter()
    ours = export_onnx(source.net, tmp / f"{name}.onnx", source.input_shape)
    export_s = time.perf_counter() - t0
    plain = tmp / f"{name}.plain.onnx"
    _plain_torchscript_onnx(source.net, plain)
    x = sample_images(8, 32, source.mean, source.std)
    rows = []
    for threads in threads_list:
        variants = [
            ("torch eager", "torch", Artifacts(net=source.net)),
            ("ORT CPU, nasctl export", "ort", Artifacts(onnx={"fp32": ours.path})),
            ("ORT CPU, plain TorchScript ONNX", "ort", Artifacts(onnx={"fp32": str(plain)})),
        ]
        reference = None
        for label, runtime_name, artifacts in variants:
            runtime = make_runtime(runtime_name, threads=threads)
            runtime.load(artifacts)
            out = np.concatenate([runtime.run(x[i:i + 1]) for i in range(len(x))])
            if reference is None:
                reference = out
            parity = compare_outputs(reference, out, tolerance_for("fp32"))
            stats = measure(runtime, x[:1], warmup=10,
                            runs=runs if runtime_name == "ort" else max(10, runs // 3),
                            max_seconds=120)
            floor_ms = macs / peaks[threads] * 1000.0
            rows.append({
                "genotype": name, "variant": label, "threads": threads,
                "median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "p99_ms": stats.p99_ms,
                "min_ms": stats.min_ms, "runs": stats.runs, "macs": macs,
                "floor_ms": round(floor_ms, 3),
                "x_floor": round(stats.median_ms / floor_ms, 2),
                "parity_max_abs": parity.max_abs, "parity_pass": parity.passed,
                "onnx_nodes": sum(ours.op_counts.values()) if "nasctl" in label else None,
                "exporter": ours.exporter if "nasctl" in label else None,
                "export_s": round(export_s, 1) if "nasctl" in label else None,
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--runs", type=int, default=100, help="timed ORT runs (torch: 1/3)")
    parser.add_argument("--genotypes", default=",".join(GENOTYPES))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    threads_list = [int(t) for t in args.threads.split(",")]

    from nasctl.atomic import write_json
    from nasctl.deploy.bench import host_info, peak_macs_per_second

    peaks = {t: peak_macs_per_second(threads=t, size=1024, seconds=2.0) for t in threads_list}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nasctl-bench-") as tmp:
        for name in args.genotypes.split(","):
            print(f"{name}: exporting and timing...", file=sys.stderr, flush=True)
            rows += bench_genotype(name, threads_list, args.runs, Path(tmp), peaks)

    print(f"{'genotype':<12} {'variant':<32} {'thr':>3} {'median':>8} {'p90':>8} {'p99':>8} "
          f"{'floor':>7} {'x floor':>7}  parity")
    for r in rows:
        print(f"{r['genotype']:<12} {r['variant']:<32} {r['threads']:>3} "
              f"{r['median_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['floor_ms']:>7.2f} {r['x_floor']:>7.2f}  "
              f"{'pass' if r['parity_pass'] else 'FAIL'} ({r['parity_max_abs']:.1e})")
    peak_text = ", ".join(f"{t} thread(s): {p / 1e9:.1f} GMAC/s" for t, p in peaks.items())
    print(f"peak fp32 multiply-add rate (1024^3 matmul, best of 2 s): {peak_text}")
    print("latencies in ms, batch 1; floor = conv+FC MACs / peak rate")
    host = host_info(None).to_dict()
    result = {"host": host, "peak_macs_per_s": {str(t): p for t, p in peaks.items()},
              "rows": rows}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
