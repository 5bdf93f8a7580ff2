"""Training-step throughput and peak memory: nasctl's step vs a plain eager fp32 loop.

    python benchmarks/train_step.py [--device cpu|cuda|all] [--steps N] [--out FILE]

Both variants train the same network (default DARTS_V2, C=36, 20 cells, auxiliary head,
batch 96, synthetic 32x32 inputs). "eager fp32" is the textbook loop: forward, CE + 0.4 aux
CE, backward, SGD step. "nasctl" is ``nasctl.train.step.train_step`` with the cifar10
recipe: the same, plus drop-path, gradient clipping and, on CUDA, channels_last, AMP and
cudnn.benchmark. Each variant runs in its own process so peak memory is its own: peak RSS
on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. Prints a table and writes JSON
(benchmarks/results/train_step.json by default).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = ("eager fp32", "nasctl")


def measure(variant: str, device_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one variant in this process; returns its figures."""
    import torch

    from nasctl.nets import build_network
    from nasctl.train.config import resolve_config
    from nasctl.train.step import make_optimizer, to_device, train_step

    device = torch.device(device_name)
    torch.manual_seed(0)
    cfg, _ = resolve_config("cifar10", overrides={"amp": args.amp})
    net = build_network(args.genotype, dataset="cifar10", C=args.channels, layers=args.layers,
                        auxiliary=True).to(device)
    cuda = device.type == "cuda"
    nasctl = variant == "nasctl"
    channels_last = nasctl and cuda
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = nasctl
    net.train()
    net.drop_path_prob = cfg.drop_path / 2 if nasctl else 0.0  # type: ignore[assignment]
    optimizer = make_optimizer(net, cfg)
    criterion = torch.nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=nasctl and cuda and args.amp == "fp16")
    images = torch.randn(args.batch, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))
    images, labels = to_device(images, labels, device, channels_last)

    def eager_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits, aux = net(images)
        loss = criterion(logits, labels) + 0.4 * criterion(aux, labels)
        loss.backward()
        optimizer.step()

    def nasctl_step() -> None:
        train_step(net, images, labels, optimizer, criterion, scaler, cfg, device)

    step = nasctl_step if nasctl else eager_step
    rss_before = _rss_mib()
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "variant": variant,
        "device": device_name,
        "amp": args.amp if nasctl and cuda else "off",
        "channels_last": channels_last,
        "steps": args.steps,
        "step_ms_median": 1000 * median,
        "step_ms_min": 1000 * min(times),
        "images_per_s": args.batch / median,
        "peak_mib": (torch.cuda.max_memory_allocated() / 2**20) if cuda else _rss_mib(),
        "peak_kind": "cuda max allocated" if cuda else "process peak RSS",
        "cpu_rss_before_steps_mib": rss_before,
        "threads": torch.get_num_threads(),
    }


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "all"),
                        help="auto: CPU, plus CUDA when present")
    parser.add_argument("--genotype", default="DARTS_V2")
    parser.add_argument("--channels", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=None,
                        help="measured steps (default 3 on CPU, 30 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="default 1 on CPU, 5 on CUDA")
    parser.add_argument("--amp", default="bf16", choices=("off", "bf16", "fp16"),
                        help="nasctl variant's AMP on CUDA")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step.json"))
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        variant, device = args.child
        cpu = device == "cpu"
        args.steps = args.steps or (3 if cpu else 30)
        args.warmup = args.warmup if args.warmup is not None else (1 if cpu else 5)
        print(json.dumps(measure(variant, device, args)))
        return

    import torch

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        sys.exit("train_step.py: --device cuda asked for, but CUDA is not available")
    devices = {"auto": ["cpu"] + (["cuda"] if cuda else []), "cpu": ["cpu"], "cuda": ["cuda"],
               "all": ["cpu"] + (["cuda"] if cuda else [])}[args.device]
    passthrough = sys.argv[1:]
    rows = []
    for device in devices:
        for variant in VARIANTS:
            proc = subprocess.run(
                [sys.executable, __file__, *passthrough, "--child", variant, device],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                sys.exit(f"train_step.py: {variant} on {device} failed:\n{proc.stderr[-2000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for row in rows:
        base = next(r for r in rows if r["device"] == row["device"]
                    and r["variant"] == "eager fp32")
        row["speedup_vs_eager"] = row["images_per_s"] / base["images_per_s"]
        row["memory_vs_eager"] = row["peak_mib"] / base["peak_mib"]

    header = (f"{'device':<6} {'variant':<11} {'amp':<5} {'img/s':>8} {'step ms':>9} "
              f"{'peak MiB':>9} {'speed x':>8} {'mem x':>6}")
    print(f"{args.genotype} C={args.channels} layers={args.layers} batch={args.batch}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['device']:<6} {r['variant']:<11} {r['amp']:<5} {r['images_per_s']:>8.1f} "
              f"{r['step_ms_median']:>9.1f} {r['peak_mib']:>9.0f} {r['speedup_vs_eager']:>8.2f} "
              f"{r['memory_vs_eager']:>6.2f}")
    doc = {
        "benchmark": "train_step",
        "genotype": args.genotype, "channels": args.channels, "layers": args.layers,
        "batch": args.batch,
        "torch": str(torch.__version__), "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
