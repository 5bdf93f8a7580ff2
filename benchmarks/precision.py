"""ONNX Runtime CPU latency and digits accuracy per precision (fp32, fp16, int8 Q/DQ) for
DARTS_V2 trained briefly on digits and for DARTS_V2 at CIFAR size (random weights).

The graphs are made exactly as `nasctl export --precision fp32,fp16,int8 --dynamic-batch`
makes them (nasctl.deploy.artifacts.prepare_artifacts, int8 calibrated with MinMax on
digits train images) and run by nasctl's `ort` runtime: fp32 and fp16 at graph
optimization level ALL, int8 at BASIC (Q/DQ kept as fake quantization). One extra row,
`int8 fused`, runs the same int8 graph at ALL, where ONNX Runtime fuses the Q/DQ pairs into
integer kernels, to show what that level does to agreement and speed on this CPU.

Parity is against PyTorch fp32 on digits test images: top-1 agreement for both models,
accuracy against the labels for the trained one (a random network's accuracy means
nothing). Latency: median and p90 at each batch size and intra-op thread count.

    python benchmarks/precision.py [--quick] [--threads 1,2] [--batches 1,32] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nasctl.deploy.runtimes import OrtRuntime

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "precision.json"
VARIANTS = ("fp32", "fp16", "int8", "int8 fused")


class FusedInt8Ort(OrtRuntime):
    """The int8 graph at ORT_ENABLE_ALL: ONNX Runtime fuses Q/DQ into integer kernels."""

    def optimization_level(self) -> str:
        return "ORT_ENABLE_ALL"


def _runtime(variant: str, threads: int) -> OrtRuntime:
    if variant == "int8 fused":
        return FusedInt8Ort("int8", threads)
    return OrtRuntime(variant, threads)


_STARTED = time.perf_counter()


def _log(label: str, text: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.0f} s] {label}: {text}", file=sys.stderr,
          flush=True)


def _vnni() -> str:
    """Which VNNI (int8 dot-product) extension this CPU has, if any."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(line for line in fh if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return ",".join(found) or "none"


def _digits_source(tmp: Path, epochs: int) -> Any:
    """DARTS_V2 at C=8, 5 cells trained on digits (what `nasctl train DARTS_V2 --recipe
    digits --epochs 1 -C 8 --layers 5` does), on one thread: not timed, and on a shared
    2-vCPU host torch's two threads are several times slower."""
    import torch

    from nasctl.export.source import load_model_source
    from nasctl.train import resolve_config, train

    cfg, _ = resolve_config("digits", overrides={"channels": 8, "layers": 5,
                                                  "epochs": epochs, "device": "cpu"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("DARTS_V2", cfg, tmp / "train", recipe="digits")
    finally:
        torch.set_num_threads(threads)
    return load_model_source(tmp / "train" / "best.pt")


def _run_chunks(runtime: Any, images: Any, chunk: int = 32) -> Any:
    import numpy as np

    return np.concatenate([runtime.run(images[i:i + chunk])
                           for i in range(0, len(images), chunk)])


def bench_model(label: str, source: Any, tmp: Path, args: argparse.Namespace,
                threads_list: list[int], batches: list[int]) -> list[dict[str, Any]]:
    from nasctl.deploy.artifacts import (
        ArtifactPlan,
        ExportSettings,
        onnx_metadata,
        prepare_artifacts,
    )
    from nasctl.deploy.bench import measure
    from nasctl.deploy.export_inputs import calibration_for
    from nasctl.deploy.inputs import sample_labelled_images
    from nasctl.deploy.parity import compare_outputs, tolerance_for
    from nasctl.deploy.runtimes import make_runtime

    out = tmp / label
    out.mkdir()
    plan = ArtifactPlan(graphs=("fp32", "fp16", "int8"), engines=())
    calib_images = args.calib_images if source.trained else args.calib_images_cifar
    settings = ExportSettings(dynamic_batch=True, max_batch=max(batches))
    _log(label, "exporting fp32, fp16 and int8 graphs")
    t0 = time.perf_counter()
    prepared = prepare_artifacts(
        source, out, plan, settings, onnx_metadata(source, True),
        lambda: calibration_for(source, "digits", calib_images, "minmax", None, True))
    export_s = time.perf_counter() - t0
    failed = [r for r in prepared.records if r.status == "failed"]
    if failed:
        raise SystemExit(f"{label}: {failed[0].precision} graph failed: {failed[0].error}")
    count = args.samples if source.trained else args.samples_cifar
    images, labels = sample_labelled_images(count, source.input_size, source.mean,
                                            source.std, source="digits", split="test")
    _log(label, f"torch fp32 reference on {len(images)} images")
    reference_rt = make_runtime("torch", "fp32", max(threads_list))
    reference_rt.load(prepared.artifacts)
    reference = _run_chunks(reference_rt, images)
    rows = []
    for variant in VARIANTS:
        precision = variant.split()[0]
        parity = None
        for threads in sorted(threads_list, reverse=True):
            runtime = _runtime(variant, threads)
            runtime.load(prepared.artifacts)
            if parity is None:  # on the first (most-threaded) session
                _log(label, f"{variant}: parity on {len(images)} images")
                parity = compare_outputs(reference, _run_chunks(runtime, images),
                                         tolerance_for(precision), precision, labels,
                                         judge_accuracy=source.trained)
            for batch in batches:
                _log(label, f"{variant}, {threads} thread(s), batch {batch}")
                x = images[[i % len(images) for i in range(batch)]]
                runs = args.runs if batch == 1 else max(3, args.runs // 4)
                stats = measure(runtime, x, warmup=args.warmup, runs=runs,
                                max_seconds=args.max_seconds)
                rows.append({
                    "model": label, "variant": variant, "precision": precision,
                    "graph_optimization_level": runtime.optimization_level(),
                    "threads": threads, "batch": batch,
                    "median_ms": stats.median_ms, "p90_ms": stats.p90_ms,
                    "p99_ms": stats.p99_ms, "runs": stats.runs,
                    "img_per_s": stats.throughput,
                    "parity_pass": parity.passed, "parity_samples": parity.samples,
                    "top1_agreement": parity.top1_agreement,
                    "accuracy": parity.accuracy if source.trained else None,
                    "accuracy_delta": parity.accuracy_delta if source.trained else None,
                    "max_abs_over_rms": parity.max_abs_over_rms,
                    "weights": "trained" if source.trained else "random",
                    "C": source.channels, "layers": source.layers,
                    "export_s": round(export_s, 1),
                })
    rows.sort(key=lambda r: (VARIANTS.index(r["variant"]), r["threads"], r["batch"]))
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    fp32 = {(r["model"], r["threads"], r["batch"]): r["median_ms"] for r in rows
            if r["variant"] == "fp32"}
    print(f"{'model':<14} {'variant':<10} {'thr':>3} {'batch':>5} {'median':>9} "
          f"{'p90':>9} {'x fp32':>6} {'img/s':>8}  {'err/rms':>7} {'top-1 agr':>9} "
          f"{'accuracy':>15}")
    for r in rows:
        accuracy = (f"{r['accuracy']:.1%} ({r['accuracy_delta'] * 100:+.1f})"
                    if r["accuracy"] is not None else "-")
        ratio = r["median_ms"] / fp32[(r["model"], r["threads"], r["batch"])]
        print(f"{r['model']:<14} {r['variant']:<10} {r['threads']:>3} {r['batch']:>5} "
              f"{r['median_ms']:>9.2f} {r['p90_ms']:>9.2f} {ratio:>6.2f} "
              f"{r['img_per_s']:>8.1f}  {r['max_abs_over_rms']:>7.2f} "
              f"{r['top1_agreement']:>9.1%} {accuracy:>15}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run: fewer images and timed runs, batch 1 and 32, "
                             "1 thread")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts")
    parser.add_argument("--batches", default="1,32", help="batch sizes")
    parser.add_argument("--runs", type=int, default=30, help="timed runs at batch 1 "
                        "(a quarter, at least 3, at larger batches)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=8.0,
                        help="stop timing one row after this long (at least 5 runs)")
    parser.add_argument("--samples", type=int, default=360,
                        help="digits test images for the trained model's parity (all 360)")
    parser.add_argument("--samples-cifar", type=int, default=64,
                        help="digits test images for the CIFAR-size model's agreement")
    parser.add_argument("--calib-images", type=int, default=256,
                        help="int8 calibration images (digits train split)")
    parser.add_argument("--calib-images-cifar", type=int, default=64,
                        help="the same for the CIFAR-size model (random weights)")
    parser.add_argument("--epochs", type=int, default=1, help="digits training epochs")
    parser.add_argument("--models", default="digits,cifar",
                        help="digits (trained, C=8, 5 cells), cifar (C=36, 20 cells)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.threads, args.runs, args.warmup, args.max_seconds = "1", 5, 1, 3.0
        args.samples, args.samples_cifar = 120, 32
        args.calib_images, args.calib_images_cifar = 64, 16
    threads_list = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    from nasctl.atomic import write_json
    from nasctl.deploy.bench import host_info
    from nasctl.export.source import load_model_source

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasctl-precision-") as tmp_dir:
        tmp = Path(tmp_dir)
        for model in args.models.split(","):
            if model == "digits":
                _log("digits", "training DARTS_V2 (C=8, 5 cells)")
                source = _digits_source(tmp, args.epochs)
                label = "digits C8 L5"
            elif model == "cifar":
                source = load_model_source("DARTS_V2", dataset="cifar10")
                label = "cifar C36 L20"
            else:
                parser.error(f"unknown model {model!r} (digits, cifar)")
            rows += bench_model(label, source, tmp, args, threads_list, batches)
    _print_table(rows)
    vnni = _vnni()
    print("latencies in ms on ONNX Runtime CPU; x fp32 = median over the fp32 median; "
          "err/rms = max |error| over the reference RMS; top-1 agr and accuracy against "
          "PyTorch fp32 on digits test images (accuracy only for the trained model); "
          f"CPU VNNI: {vnni}")
    result = {"host": host_info(None).to_dict(), "cpu_vnni": vnni, "quick": args.quick,
              "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
