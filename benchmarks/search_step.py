"""Time and peak memory of one search step (architecture step + weight step).

Default setting (issue §7): batch 32, C=16, 8 cells, 32x32 inputs, CPU. Each
(method, implementation) runs in a fresh subprocess so its peak RSS
(resource.getrusage ru_maxrss) is its own.

- ``fast``: what ``nasctl search`` runs (the loop's ``SearchStep.arch_step``/``weight_step``:
  shared ReLUs, no ``none`` op, mixture weights folded into BNs, depthwise convs with the
  faster CPU backward, alpha-only gradients in the architecture step, frozen alphas in the
  weight step, channels_last) with ``--recompute off``;
- ``fast+convs`` (the CPU default): the same, recomputing the convs and pools before each
  BatchNorm in backward;
- ``fast+full-res`` and ``fast+all``: also recomputing whole edges in backward in the
  full-resolution cells or in every cell;
- ``naive``: the straightforward reference, as the official FairDARTS/DARTS code does it:
  per-edge, per-op loop, full backward (all gradients) in both steps, NCHW, PyTorch's own
  depthwise conv backward;
- ``official`` (with ``--official DIR``, FairDARTS only): the official FairDARTS code's own
  step from the user's checkout DIR of github.com/xiaomi-automl/FairDARTS (see
  ``official_step.py``; nothing of it is vendored here).

The table gives CPU seconds per step (process time: it does not count the time other
processes take the cores from this one, which wall time does) as the fastest round and the
range over rounds, the peak RSS, and each row's speed-up and memory against the naive step
and the official one (the fastest rounds against each other).

    python benchmarks/search_step.py [--methods fairdarts,idarts,darts] [--threads 1] [--rounds 3]
        [--official DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

IMPLS = ("fast", "fast+convs", "fast+full-res", "fast+all", "naive")


def _batches(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    size = (args.batch, 3, args.size, args.size)
    xa, xw = torch.randn(size, generator=g), torch.randn(size, generator=g)
    ya, yw = (torch.randint(0, 10, (args.batch,), generator=g) for _ in range(2))
    return xa, ya, xw, yw


def nasctl_step(args: argparse.Namespace) -> Callable[[], None]:
    import torch.nn.functional as F  # noqa: N812

    from nasctl.distributed import DistInfo
    from nasctl.nets.depthwise import DepthwiseConv2d
    from nasctl.search import make_search_config
    from nasctl.search.loop import Search

    naive = args.impl == "naive"
    cfg = make_search_config(method=args.method, channels=args.channels, layers=args.layers,
                             batch_size=args.batch, device="cpu", channels_last=not naive,
                             recompute=args.impl.split("+")[1] if "+" in args.impl else "off",
                             epochs=1)
    search = Search(cfg, DistInfo(), torch.device("cpu"))
    search.model.impl = "naive" if naive else "fast"
    for m in search.model.modules():
        if isinstance(m, DepthwiseConv2d):
            m.fast_backward = not naive  # the official code runs PyTorch's convs
    step = search.step
    xa, ya, xw, yw = _batches(args)
    xa, ya = step.to(xa, ya)
    xw, yw = step.to(xw, yw)
    model = search.model

    def naive_step() -> None:
        # arch step: forward, full backward (weights get gradients too), Adam step
        step.a_opt.zero_grad()
        model.zero_grad()
        loss = F.cross_entropy(model(xa), ya)
        reg = search.method.regularizer(model)
        (loss if reg is None else loss + reg).backward()
        step.a_opt.step()
        # weight step: forward, full backward (alphas get gradients too), clip, SGD step
        step.w_opt.zero_grad()
        model.zero_grad()
        F.cross_entropy(model(xw), yw).backward()
        torch.nn.utils.clip_grad_norm_(step.weights, 5.0)
        step.w_opt.step()

    def fast_step() -> None:
        step.step(xa, ya, xw, yw)

    return naive_step if naive else fast_step


def child(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.impl == "official":
        from official_step import official_step

        run_step = official_step(Path(args.official), args.channels, args.layers,
                                 *_batches(args))
    else:
        run_step = nasctl_step(args)
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(args.warmup):
        run_step()
    wall, cpu = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        run_step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"method": args.method, "impl": args.impl, "wall_s": min(wall),
            "cpu_s": min(cpu), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "setup_rss_mb": rss_setup, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="fairdarts,idarts,darts")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every config this many times, round-robin; report the fastest")
    p.add_argument("--official", metavar="DIR",
                   help="a checkout of github.com/xiaomi-automl/FairDARTS: add its own step "
                        "(FairDARTS only) and each row's ratios against it")
    p.add_argument("--out", default="benchmarks/results/search_step.json")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    configs = [(m, i) for m in args.methods.split(",") for i in args.impls.split(",")]
    if args.official:
        args.official = str(Path(args.official).resolve())
        configs.append(("fairdarts", "official"))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configs}
    settings = ("batch", "channels", "layers", "size", "warmup", "steps", "threads")
    for round_ in range(args.rounds):  # round-robin: a noisy spell hits every config alike
        for method, impl in configs:
            cmd = [sys.executable, __file__, "--child", "--method", method, "--impl", impl,
                   *[f"--{k}={getattr(args, k)}" for k in settings]]
            if impl == "official":
                cmd.append(f"--official={args.official}")
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{method}/{impl} failed:\n{proc.stderr[-2000:]}")
            runs[method, impl].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1}/{args.rounds} {method:10s} {impl:15s} done",
                  file=sys.stderr)
    rows = [{**found[0], "wall_s": min(r["wall_s"] for r in found),
             "cpu_s": min(r["cpu_s"] for r in found),
             "cpu_s_per_round": [r["cpu_s"] for r in found],
             "wall_s_per_round": [r["wall_s"] for r in found],
             "peak_rss_mb": max(r["peak_rss_mb"] for r in found),
             "peak_rss_mb_per_round": [r["peak_rss_mb"] for r in found]}
            for found in runs.values()]
    naive = {r["method"]: r for r in rows if r["impl"] == "naive"}
    official = next((r for r in rows if r["impl"] == "official"), None)
    for r in rows:
        refs = {"naive": naive.get(r["method"]),
                "official": official if r["method"] == "fairdarts" else None}
        for name, ref in refs.items():
            if ref is not None and ref is not r:  # fastest against fastest, and round by round
                r[f"speedup_vs_{name}"] = ref["cpu_s"] / r["cpu_s"]
                r[f"memory_vs_{name}"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
                r[f"speedup_vs_{name}_per_round"] = [
                    a / b for a, b in zip(ref["cpu_s_per_round"], r["cpu_s_per_round"],
                                          strict=True)]
    print(f"search step: batch {args.batch}, C={args.channels}, {args.layers} cells, "
          f"{args.size}x{args.size}, CPU, {rows[0]['threads']} thread(s), {args.rounds} "
          "round(s); CPU s per step: fastest round (range)")
    print(f"{'method':10s} {'impl':14s} {'cpu s':>19s} {'peak RSS MB':>11s} "
          f"{'speed x naive':>19s} {'mem':>5s} {'speed x official':>19s} {'mem':>5s}")

    def spread(best: float, per: list[float]) -> str:
        return f"{best:.2f} ({min(per):.2f}-{max(per):.2f})"

    def versus(r: dict[str, Any], ref: str) -> str:
        if f"speedup_vs_{ref}" not in r:
            return f"{'-':>19s} {'-':>5s}"
        speed = spread(r[f"speedup_vs_{ref}"], r[f"speedup_vs_{ref}_per_round"])
        return f"{speed:>19s} {r[f'memory_vs_{ref}']:5.2f}"

    for r in rows:
        print(f"{r['method']:10s} {r['impl']:14s} {spread(r['cpu_s'], r['cpu_s_per_round']):>19s}"
              f" {r['peak_rss_mb']:11.0f} {versus(r, 'naive')} {versus(r, 'official')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {k: getattr(args, k) for k in
                                            (*settings, "rounds", "official")}, "rows": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
