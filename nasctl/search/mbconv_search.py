"""A search in the ``mbconv`` space: first-order alternating updates, as FairDARTS does.

Each step: an architecture step on a batch of the architecture half (cross-entropy, the
method's regulariser, e.g. FairDARTS's zero-one loss, and the MAC penalty when a budget
is set), then a weight step on a batch of the weight half. At the end each layer keeps
its strongest candidate; the run folder gets ``genotype.json`` (a ``mbconv-chain``
genotype), ``config.json``, ``metrics.jsonl`` and ``report.json`` with the found
architecture's MACs against the target.

This is the space's own compact loop (no checkpoints/resume, single process); the shared
search loop can drive :class:`~nasctl.search.mbconv.MBConvSupernet` instead (see
docs/mbconv-space.md for the hook).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasctl.errors import NasctlError, TrainingDiverged
from nasctl.genotypes import Genotype, write_genotype
from nasctl.nets.mbconv import PROXYLESS_S2, ChainLayout, chain_macs, scaled

Event = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class MBConvSearchConfig:
    """Settings; ``None`` hyperparameters take the method's official values."""

    method: str = "fairdarts"
    dataset: str = "digits"
    layout: ChainLayout = PROXYLESS_S2
    width_mult: float = 1.0
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    arch_lr: float | None = None
    macs_target: float | None = None  # MACs (not millions) of the network at macs_resolution
    macs_weight: float = 1.0
    macs_resolution: int = 224
    macs_classes: int = 1000
    train_portion: float = 0.5
    steps_per_epoch: int | None = None
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None


@dataclass(frozen=True)
class MBConvSearchResult:
    """Field names as the shared loop's result, so one CLI can print either."""

    run_dir: Path
    genotype: Genotype
    epochs_run: int
    macs: int  # the found architecture at macs_resolution / macs_classes
    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def search_mbconv(cfg: MBConvSearchConfig, out: str | os.PathLike[str],
                  on_event: Event | None = None) -> MBConvSearchResult:
    from nasctl.data import dataset_info, get_dataset, make_loader, search_split
    from nasctl.device import resolve_device, seed_everything
    from nasctl.runs import RunDir
    from nasctl.search.mbconv import MacBudget, MBConvSupernet
    from nasctl.search.methods import get_method

    emit = on_event or (lambda _e: None)
    method = get_method(cfg.method)
    hyper = method.hyper
    epochs = cfg.epochs if cfg.epochs is not None else hyper.epochs
    batch = cfg.batch_size or hyper.batch_size
    if cfg.macs_target is not None and cfg.macs_target <= 0:
        raise NasctlError(f"--macs-target must be positive, got {cfg.macs_target}")
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    info = dataset_info(cfg.dataset)
    weight_set, arch_set = search_split(get_dataset(cfg.dataset, "train", cfg.data_dir),
                                        cfg.train_portion, cfg.seed)
    weight_loader = make_loader(weight_set, batch, shuffle=True, seed=cfg.seed, drop_last=True)
    arch_loader = make_loader(arch_set, batch, shuffle=True, seed=cfg.seed + 1, drop_last=True)
    layout = scaled(cfg.layout, cfg.width_mult)
    model = MBConvSupernet(layout, method.activation, info.num_classes,
                           alpha_init=method.alpha_init).to(device)
    budget = None if cfg.macs_target is None else MacBudget(
        cfg.macs_target, cfg.macs_weight, cfg.macs_resolution, cfg.macs_classes)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=cfg.lr or hyper.lr,
                            momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr or hyper.arch_lr,
                             betas=hyper.arch_betas, weight_decay=hyper.arch_weight_decay)
    steps = min(len(weight_loader), len(arch_loader))
    if cfg.steps_per_epoch is not None:
        steps = min(steps, cfg.steps_per_epoch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, max(epochs, 1), hyper.lr_min)
    criterion = nn.CrossEntropyLoss()
    run = RunDir(out)
    run.write_config({"space": "mbconv", **asdict(cfg), "epochs": epochs, "batch_size": batch,
                      "layout": asdict(layout), "method_options": method.options()})
    # Events follow the shared search loop's schema (start/step/epoch/done).
    emit({"event": "start", "epoch": 0, "epochs": epochs, "steps": steps, "device": str(device)})
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        sums = dict.fromkeys(("weight_loss", "arch_loss", "weight_acc", "arch_acc"), 0.0)
        batches = zip(weight_loader, arch_loader, strict=False)  # halves may differ by one
        for step, ((xw, yw), (xa, ya)) in enumerate(batches):
            if step >= steps:
                break
            xa, ya, xw, yw = (t.to(device) for t in (xa, ya, xw, yw))
            a_opt.zero_grad(set_to_none=True)
            logits_a = model(xa)
            arch_loss = criterion(logits_a, ya)
            if (reg := method.regularizer(model)) is not None:  # type: ignore[arg-type]
                arch_loss = arch_loss + reg
            if budget is not None:
                arch_loss = arch_loss + model.macs_penalty(budget)
            arch_loss.backward()
            a_opt.step()
            w_opt.zero_grad(set_to_none=True)
            logits_w = model(xw)
            loss = criterion(logits_w, yw)
            loss.backward()
            nn.utils.clip_grad_norm_(model.weight_parameters(), hyper.grad_clip)
            w_opt.step()
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the search diverged at epoch {epoch + 1}, step {step}")
            sums["weight_loss"] += loss.item()
            sums["arch_loss"] += arch_loss.item()
            sums["weight_acc"] += (logits_w.argmax(1) == yw).float().mean().item()
            sums["arch_acc"] += (logits_a.argmax(1) == ya).float().mean().item()
            emit({"event": "step", "epoch": epoch + 1, "step": step + 1,
                  "weight_loss": loss.item(), "arch_loss": arch_loss.item()})
        sched.step()
        with torch.no_grad():
            expected = model.expected_macs(cfg.macs_resolution, cfg.macs_classes).item()
        record = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()},
                  "expected_macs": expected, "ops": model.strongest_ops()}
        run.append_metrics(record)
        emit({"event": "epoch", **record})
    provenance = {"method": cfg.method, "space": "mbconv", "dataset": cfg.dataset,
                  "seed": cfg.seed, "epochs": epochs, "width_mult": cfg.width_mult,
                  "discretization": {"rule": "strongest candidate per layer"}}
    genotype = model.discretize(name=f"{cfg.method}_mbconv", provenance=provenance)
    write_genotype(genotype, run.file("genotype.json"))
    macs = chain_macs(genotype.cells["chain"], cfg.macs_resolution, cfg.macs_classes)
    report = {
        "genotype": str(run.file("genotype.json")),
        "ops": model.strongest_ops(),
        "weights": [[round(float(v), 4) for v in w.detach()] for w in model.arch_weights()],
        "macs": macs, "macs_resolution": cfg.macs_resolution, "macs_classes": cfg.macs_classes,
        "macs_target": cfg.macs_target,
        "macs_vs_target": None if cfg.macs_target is None else macs / cfg.macs_target,
        "elapsed_s": time.perf_counter() - start,
    }
    run.write_report(report)
    files = {name: str(run.file(name))
             for name in ("genotype.json", "config.json", "metrics.jsonl", "report.json")}
    notes = [] if cfg.macs_target is None else [
        f"found architecture: {macs / 1e6:.1f}M MACs against the {cfg.macs_target / 1e6:.1f}M "
        f"target ({cfg.macs_resolution}x{cfg.macs_resolution}, {cfg.macs_classes} classes)"]
    emit({"event": "done", "files": files, "notes": notes})
    return MBConvSearchResult(run.path, genotype, epochs, macs, report, files, notes)
