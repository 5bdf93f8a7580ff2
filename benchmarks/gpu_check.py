"""One check of what a CUDA machine gives nasctl, stage by stage, in under 8 minutes.

    python benchmarks/gpu_check.py [--out FILE] [--budget-s 450]
    python benchmarks/gpu_check.py --smoke        # CPU, tiny sizes (the test suite runs it)

Each stage runs in its own try block: a failure is recorded with its one-line reason and
the next stage runs. The JSON (default benchmarks/results/gpu_check.json) is rewritten
atomically after every stage, so a killed run keeps what it measured. A table is printed
at the end.

- ``env``: NVIDIA driver, torch / CUDA / cuDNN / NCCL, the GPU, ONNX Runtime build and
  providers, whether TensorRT imports.
- ``search_step``: the FairDARTS bilevel step (batch 64, C=16, 8 cells, 32x32) for AMP
  off / bf16 / fp16 x channels_last off / on, and DARTS's second-order (unrolled) step:
  median ms per step, peak memory, whether the alphas stay finite. The step is built here
  from ``SearchNetwork`` and the method (activation, regulariser, its own architecture
  gradient rule), the way nasctl's search step runs it: an architecture step with
  alpha-only gradients, then a weight step with frozen alphas, clipping, one GradScaler.
- ``arch_grad_cosine``: cosine between the bf16 / fp16 and the fp32 alpha gradients (same
  weights, same batch) for FairDARTS and DARTS; fp16 scaled as the GradScaler would (from
  2**16, halved while the gradients overflow).
- ``host_syncs``: synchronising CUDA calls per step (``torch.cuda.set_sync_debug_mode``),
  in the search step and in the training loop (``nasctl.train.train``; two runs of
  different length, so per-epoch work cancels out of the difference).
- ``train``: ``nasctl train`` for 40 steps (4 epochs of 10; the first is warm-up), C=36,
  20 cells, batch 96, on the embedded digits set (no download), per AMP setting: images/s.
- ``tf32``: fp32 logits of DARTS_V2 (C=36, 20 cells) on CUDA with TF32 off and on, against
  the CPU.
- ``process_group``: a single-rank NCCL process group (init time, one all-reduce).
- ``export``: ``nasctl export`` of the fp32 training checkpoint (fp32 and fp16 graphs, every
  runtime, TensorRT engines when TensorRT imports): one row per runtime and precision.

``--smoke`` runs on CPU at tiny sizes: AMP rows of the search stages use CPU autocast,
the process group is gloo, training runs AMP off only (nasctl's ``--amp`` is CUDA-only),
and the CUDA-only stages are skipped with the reason recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from nasctl import atomic

AMPS = ("off", "bf16", "fp16")
AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}


@dataclass(frozen=True)
class Settings:
    search_batch: int = 64
    search_channels: int = 16
    search_layers: int = 8
    image: int = 32
    warmup: int = 3
    steps: int = 10
    unrolled_steps: int = 5
    train_channels: int = 36
    train_layers: int = 20
    train_batch: int = 96
    train_epochs: int = 4
    train_steps_per_epoch: int = 10
    tf32_batch: int = 32
    sync_steps: tuple[int, int] = (4, 12)
    export_precisions: str = "fp32,fp16"
    export_samples: int = 200
    export_latency_runs: int = 50
    export_exporter: str = "auto"


# The smoke run's export uses the TorchScript exporter: half the time of dynamo's on CPU.
SMOKE = Settings(search_batch=4, search_channels=4, search_layers=3, image=8, warmup=0, steps=1,
              unrolled_steps=1, train_channels=4, train_layers=3, train_batch=8,
              train_epochs=2, train_steps_per_epoch=2, tf32_batch=2, sync_steps=(2, 4),
              export_precisions="fp32", export_samples=16, export_latency_runs=3,
              export_exporter="torchscript")


class StageSkipped(Exception):  # noqa: N818 - a reason, not an error
    """The stage does not apply here (e.g. it needs CUDA); the message says why."""


class BilevelStep:
    """nasctl's search step built from the supernet and the method alone."""

    def __init__(self, method: str, settings: Settings, device: torch.device, amp: str,
                 channels_last: bool, **options: Any) -> None:
        from nasctl.search.methods import get_method
        from nasctl.search.supernet import SearchNetwork

        self.method = get_method(method, **options)
        self.device, self.dtype = device, AMP_DTYPES[amp]
        torch.manual_seed(0)
        self.model = SearchNetwork(self.method.default_ops, self.method.activation,
                                   channels=settings.search_channels, layers=settings.search_layers,
                                   node_norm=self.method.node_norm,
                                   alpha_init=self.method.alpha_init).to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.weights = list(self.model.weight_parameters())
        self.alphas = list(self.model.arch_parameters())
        h = self.method.hyper
        self.grad_clip = h.grad_clip
        self.w_opt = torch.optim.SGD(self.weights, h.lr, momentum=h.momentum,
                                     weight_decay=h.weight_decay)
        self.a_opt = torch.optim.Adam(self.alphas, h.arch_lr, betas=h.arch_betas,
                                      weight_decay=h.arch_weight_decay)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        g = torch.Generator().manual_seed(0)
        shape = (settings.search_batch, 3, settings.image, settings.image)
        self.batches = [(torch.randn(shape, generator=g).to(device).contiguous(
                             memory_format=self.memory_format),
                         torch.randint(0, 10, (settings.search_batch,), generator=g).to(device))
                        for _ in range(2)]

    def loss(self, x: torch.Tensor, y: torch.Tensor, arch: bool,
             amp: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, correct)``; the architecture loss adds the method's regulariser."""
        on = amp and self.dtype is not None
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=on):
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y)
        if arch:
            reg = self.method.regularizer(self.model)
            if reg is not None:
                loss = loss + reg
        return loss, (logits.argmax(1) == y).sum()

    def first_order_grads(self, x: torch.Tensor, y: torch.Tensor,
                          scale: float | None = None) -> list[torch.Tensor]:
        """Alpha gradients of the architecture loss times ``scale`` (default: the
        GradScaler's), the weights frozen."""
        for p in self.weights:
            p.requires_grad_(False)
        try:
            loss, _correct = self.loss(x, y, arch=True)
            scaled = self.scaler.scale(loss) if scale is None else loss * scale
            return list(torch.autograd.grad(scaled, self.alphas))
        finally:
            for p in self.weights:
                p.requires_grad_(True)

    def step(self) -> None:
        (xa, ya), (xw, yw) = self.batches
        self.a_opt.zero_grad(set_to_none=True)
        # duck-typed as nasctl's SearchStep: weights, alphas, w_opt and loss()
        own = self.method.arch_gradients(self, xw, yw, xa, ya)  # type: ignore[arg-type]
        # the method's own rule gives fp32 gradients: scaled here, the scaler unscales them
        grads = self.first_order_grads(xa, ya) if own is None else self.scaler.scale(own[0])
        for p, g in zip(self.alphas, grads, strict=True):
            p.grad = g
        self.scaler.step(self.a_opt)
        self.w_opt.zero_grad(set_to_none=True)
        for p in self.alphas:
            p.requires_grad_(False)
        try:
            loss, _correct = self.loss(xw, yw, arch=False)
            self.scaler.scale(loss).backward()
        finally:
            for p in self.alphas:
                p.requires_grad_(True)
        self.scaler.unscale_(self.w_opt)
        torch.nn.utils.clip_grad_norm_(self.weights, self.grad_clip)
        self.scaler.step(self.w_opt)
        self.scaler.update()

    def alphas_finite(self) -> bool:
        return all(bool(torch.isfinite(a).all()) for a in self.alphas)


class Check:
    """The stages, sharing the device, the sizes, a work folder and the JSON document."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.smoke: bool = args.smoke
        self.settings = SMOKE if self.smoke else Settings()
        self.device = torch.device("cpu" if self.smoke else "cuda")
        self.cuda = self.device.type == "cuda"
        self.out = Path(args.out)
        self.work = work
        self.deadline = time.monotonic() + args.budget_s
        self.checkpoint: Path | None = None  # the fp32 training run's, for export
        self.doc: dict[str, Any] = {"format": "nasctl-gpu-check", "smoke": self.smoke,
                                    "device": str(self.device), "settings": asdict(self.settings),
                                    "stages": {}}

    # --- running and recording ----------------------------------------------------------

    def run(self, name: str, stage: Callable[[], dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            if time.monotonic() > self.deadline:
                raise StageSkipped("the time budget (--budget-s) is spent")
            record = {"status": "ok", **stage()}
        except StageSkipped as exc:
            record = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # a failed stage is a result; the next stage still runs
            record = {"status": "failed", "reason": _one_line(exc)}
        finally:
            if self.cuda:
                torch.cuda.empty_cache()
        record["seconds"] = round(time.perf_counter() - started, 2)
        self.doc["stages"][name] = record
        atomic.write_json(self.out, self.doc)

    def need_cuda(self, what: str) -> None:
        if not self.cuda:
            raise StageSkipped(f"{what} needs CUDA (--smoke runs on CPU)")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def timeout(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left < 5:
            raise StageSkipped("the time budget (--budget-s) is spent")
        return min(cap, left)

    def nasctl(self, args: list[str], cap: float) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "nasctl", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout(cap),
                              cwd=self.work)

    # --- stages -------------------------------------------------------------------------

    def env(self) -> dict[str, Any]:
        from nasctl.envinfo import environment

        info = environment()
        info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() \
            else None
        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                           "memory_gib": round(props.total_memory / 2**30, 1)}
            nccl = torch.cuda.nccl.version()  # a tuple in recent torch, an int before
            info["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
        smi = shutil.which("nvidia-smi")
        if smi is None:
            info["driver"] = "nvidia-smi not found"
        else:
            proc = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
            info["driver"] = proc.stdout.strip() or _one_line(proc.stderr)
        info["tensorrt_imports"] = info["tensorrt"][:1].isdigit()
        return info

    def _time_steps(self, step: BilevelStep, steps: int) -> dict[str, Any]:
        for _ in range(self.settings.warmup):
            step.step()
        self.sync()
        self.reset_peak()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step.step()
            self.sync()
            times.append(1000 * (time.perf_counter() - t0))
        return {"ms_per_step": round(statistics.median(times), 2),
                "ms_min": round(min(times), 2), "peak_mb": round(self.peak_mb(), 1),
                "alphas_finite": step.alphas_finite()}

    def search_step(self) -> dict[str, Any]:
        rows = []
        configs: list[tuple[str, str, bool, dict[str, Any]]] = [
            ("fairdarts", amp, cl, {}) for amp in AMPS for cl in (False, True)]
        # the second-order step runs in fp32 whatever the AMP setting: fp16 must stay finite
        configs += [("darts", amp, True, {"unrolled": True}) for amp in ("off", "fp16")]
        for method, amp, channels_last, options in configs:
            row: dict[str, Any] = {"method": method + (" unrolled" if options else ""),
                                   "amp": amp, "channels_last": channels_last}
            try:
                step = BilevelStep(method, self.settings, self.device, amp, channels_last,
                                   **options)
                steps = self.settings.unrolled_steps if options else self.settings.steps
                row.update(self._time_steps(step, steps))
                del step
            except Exception as exc:  # one failed configuration leaves the others
                row["error"] = _one_line(exc)
            rows.append(row)
            if self.cuda:
                torch.cuda.empty_cache()
        return {"peak_memory": "torch.cuda.max_memory_allocated" if self.cuda else
                "process peak RSS so far (ru_maxrss)", "autocast_device": self.device.type,
                "rows": rows}

    def arch_grad_cosine(self) -> dict[str, Any]:
        rows = []
        for method in ("fairdarts", "darts"):
            grads, scales = {}, {}
            for amp in AMPS:  # the same seed: the same weights, alphas and batch
                step = BilevelStep(method, self.settings, self.device, amp, self.cuda)
                # fp16 as the GradScaler does it: from 2**16, halved while gradients overflow
                scale = 2.0**16 if amp == "fp16" else 1.0
                while True:
                    g = _flat(step.first_order_grads(*step.batches[0], scale=scale)) / scale
                    if bool(torch.isfinite(g).all()) or scale <= 1.0:
                        break
                    scale /= 2
                grads[amp], scales[amp] = g, scale
                del step
            ref = grads.pop("off")
            for amp, g in grads.items():
                rows.append({"method": method, "amp": amp, "loss_scale": scales[amp],
                             "cosine": float(F.cosine_similarity(g, ref, dim=0)),
                             "rel_norm": float(g.norm() / ref.norm())})
        return {"rows": rows}

    def host_syncs(self) -> dict[str, Any]:
        self.need_cuda("torch.cuda.set_sync_debug_mode")
        rows = []
        n = self.settings.steps
        for amp in AMPS:
            step = BilevelStep("fairdarts", self.settings, self.device, amp, True)
            step.step()  # warm-up (cuDNN autotuning, lazy init)
            syncs = _count_syncs(functools.partial(_repeat, step.step, n))
            rows.append({"loop": "search step (FairDARTS)", "amp": amp,
                         "syncs_per_step": syncs / n})
        from nasctl.train import resolve_config, train

        short, long = self.settings.sync_steps
        for amp in ("off", "fp16"):
            counts = []
            for steps in (short, long):
                cfg, _recipe = resolve_config("digits", overrides={
                    "channels": 8, "layers": 5, "batch_size": 32, "epochs": 1,
                    "steps_per_epoch": steps, "eval_batches": 1, "device": "cuda", "amp": amp})
                out = self.work / f"syncs-{amp}-{steps}"
                counts.append(_count_syncs(functools.partial(train, "DARTS_V2", cfg, out)))
            rows.append({"loop": "nasctl.train.train", "amp": amp,
                         "syncs_per_step": (counts[1] - counts[0]) / (long - short),
                         "syncs_per_run": dict(zip((short, long), counts, strict=True))})
        return {"rows": rows}

    def train(self) -> dict[str, Any]:
        s = self.settings
        rows = []
        for amp in AMPS:
            row: dict[str, Any] = {"amp": amp}
            rows.append(row)
            if amp != "off" and not self.cuda:
                row["skipped"] = "nasctl's --amp applies on CUDA only (CPU trains in fp32)"
                continue
            out = self.work / f"train-{amp}"
            proc = self.nasctl(
                ["train", "DARTS_V2", "--recipe", "digits", "--channels", str(s.train_channels),
                 "--layers", str(s.train_layers), "--batch-size", str(s.train_batch),
                 "--epochs", str(s.train_epochs),
                 "--steps-per-epoch", str(s.train_steps_per_epoch), "--eval-batches", "1",
                 "--amp", amp, "--device", self.device.type, "--out", str(out), "--json"],
                cap=150)
            if proc.returncode != 0:
                row["error"] = _one_line(proc.stderr)
                continue
            epochs = [json.loads(line) for line in
                      (out / "metrics.jsonl").read_text().splitlines()]
            steady = epochs[1:] or epochs
            row.update({"steps": s.train_epochs * s.train_steps_per_epoch,
                        "images_per_s": round(statistics.median(
                            e["images_per_s"] for e in steady), 1),
                        "images_per_s_by_epoch": [round(e["images_per_s"], 1) for e in epochs],
                        "train_loss": epochs[-1]["train_loss"],
                        "elapsed_s": round(json.loads(proc.stdout)["elapsed_s"], 2)})
            if amp == "off":
                self.checkpoint = out / "last.pt"
        if not any("images_per_s" in r for r in rows):
            raise RuntimeError("; ".join(r.get("error", "") for r in rows if "error" in r))
        return {"images_per_s_of": "the median epoch after the first (warm-up)",
                "rows": rows}

    def tf32(self) -> dict[str, Any]:
        self.need_cuda("TF32")
        from nasctl.nets import build_network

        torch.manual_seed(0)
        net = build_network("DARTS_V2", dataset="cifar10", auxiliary=False).eval()
        x = torch.randn(self.settings.tf32_batch, 3, 32, 32, generator=torch.Generator()
                        .manual_seed(0))
        with torch.no_grad():
            ref = net(x)
            net.to(self.device)
            rows = []
            with _fp32_precision("ieee"):
                rows.append({"tf32": False, **_compare(net(x.to(self.device)).cpu(), ref)})
            with _fp32_precision("tf32"):
                rows.append({"tf32": True, **_compare(net(x.to(self.device)).cpu(), ref)})
        return {"reference": "CPU fp32", "rows": rows}

    def process_group(self) -> dict[str, Any]:
        backend = "nccl" if self.cuda else "gloo"
        cmd = [sys.executable, __file__, "--process-group-child", backend,
               "--out", str(self.work / "pg.store")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout(120))
        if proc.returncode != 0:
            raise RuntimeError(_one_line(proc.stderr))
        return {"backend": backend, **json.loads(proc.stdout.strip().splitlines()[-1])}

    def export(self) -> dict[str, Any]:
        if self.checkpoint is None or not self.checkpoint.exists():
            raise RuntimeError("no checkpoint to export: the fp32 training stage failed")
        from nasctl.deploy.runtimes import RUNTIME_NAMES
        from nasctl.envinfo import tensorrt_status

        trt = tensorrt_status()[:1].isdigit()
        args = ["export", str(self.checkpoint), "--out", str(self.work / "export"),
                "--precision", self.settings.export_precisions, "--runtimes",
                ",".join(RUNTIME_NAMES), "--samples", str(self.settings.export_samples),
                "--latency-runs", str(self.settings.export_latency_runs),
                "--exporter", self.settings.export_exporter, "--json"]
        proc = self.nasctl(args + (["--trt"] if trt else []), cap=300)
        if proc.returncode not in (0, 1):  # 1: a check failed; the rows say which
            raise RuntimeError(_one_line(proc.stderr))
        report = json.loads(proc.stdout)
        rows = []
        for r in report["runtimes"]:
            parity, latency = r["parity"], r["latency"]
            rows.append({"runtime": r["runtime"], "precision": r["precision"],
                         "device": r["device"], "exported": r["exported"]["status"],
                         "parity": parity["status"], "max_abs": parity.get("max_abs"),
                         "top1_agreement": parity.get("top1_agreement"),
                         "latency_ms": latency.get("median_ms"),
                         "reason": parity.get("reason") or parity.get("error")
                         or latency.get("reason") or latency.get("error")})
        return {"passed": report["passed"], "tensorrt": trt, "rows": rows}


# --- helpers ----------------------------------------------------------------------------

def _one_line(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        lines = [line.strip() for line in exc.strip().splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first[:300]}{where}"


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten() for t in tensors])


def _repeat(fn: Callable[[], object], n: int) -> None:
    for _ in range(n):
        fn()


def _count_syncs(fn: Callable[[], object]) -> int:
    """Synchronising CUDA calls made by ``fn`` (sync debug mode's warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@contextlib.contextmanager
def _fp32_precision(mode: str) -> Iterator[None]:
    """cuBLAS matmuls and cuDNN convs in ``ieee`` fp32 or ``tf32`` (the non-legacy API)."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv  # type: ignore[attr-defined]
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = mode
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def _compare(out: torch.Tensor, ref: torch.Tensor) -> dict[str, Any]:
    err = (out.double() - ref.double()).abs()
    rms = ref.double().pow(2).mean().sqrt().item()
    return {"max_abs": err.max().item(), "max_abs_over_rms": err.max().item() / rms,
            "top1_agreement": (out.argmax(1) == ref.argmax(1)).double().mean().item(),
            "finite": bool(torch.isfinite(out).all())}


def _process_group_child(backend: str, store: str) -> None:
    """One rank: init (timed), one all-reduce, destroy; prints a JSON line."""
    import torch.distributed as dist

    cuda = backend == "nccl"
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    t0 = time.perf_counter()
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1,
                            device_id=device if cuda else None)
    init_s = time.perf_counter() - t0
    x = torch.ones(1 << 20, device=device)
    t1 = time.perf_counter()
    dist.all_reduce(x)
    if cuda:
        torch.cuda.synchronize()
    reduce_ms = 1000 * (time.perf_counter() - t1)
    ok = bool((x == 1).all())
    dist.destroy_process_group()
    print(json.dumps({"init_s": round(init_s, 3), "all_reduce_ms": round(reduce_ms, 3),
                      "all_reduce_correct": ok}))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def print_table(doc: dict[str, Any]) -> None:
    print(f"gpu_check ({'smoke, ' if doc['smoke'] else ''}{doc['device']})")
    for name, stage in doc["stages"].items():
        print(f"\n== {name}: {stage['status']} ({stage['seconds']} s)"
              + (f" - {stage['reason']}" if "reason" in stage else ""))
        rows = stage.get("rows")
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            table = [[_cell(r.get(c, "")) for c in columns] for r in rows]
            widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(columns)]
            print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
            for t in table:
                print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)))
        for key, value in stage.items():
            if key not in ("status", "reason", "seconds", "rows"):
                print(f"  {key}: {_cell(value)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (for the tests)")
    p.add_argument("--out", default="benchmarks/results/gpu_check.json")
    p.add_argument("--budget-s", type=float, default=450.0,
                   help="stop starting stages after this many seconds")
    p.add_argument("--process-group-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.process_group_child:
        _process_group_child(args.process_group_child, args.out)
        return
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (--smoke runs the CPU version)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        check = Check(args, Path(tmp))
        if check.cuda:
            torch.backends.cudnn.benchmark = True
        for name in ("env", "search_step", "arch_grad_cosine", "host_syncs", "train", "tf32",
                     "process_group", "export"):
            check.run(name, getattr(check, name))
            print(f"{name}: {check.doc['stages'][name]['status']}", file=sys.stderr)
    print_table(check.doc)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
