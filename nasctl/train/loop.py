"""The final-training loop: single process, or DDP under torchrun.

Rank 0 writes the run folder (config.json, genotype.json, metrics.jsonl, last.pt, best.pt,
report.json); every rank reads the same data split by a DistributedSampler, and metrics are
summed across ranks before they are reported. Progress goes to ``on_event`` (rank 0 only).
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from nasctl import __version__
from nasctl.data import dataset_info, get_dataset, make_loader, set_loader_epoch
from nasctl.device import (
    make_grad_scaler,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from nasctl.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from nasctl.errors import CheckpointError, NasctlError, TrainingDiverged
from nasctl.genotypes import Genotype, load_genotype, write_genotype
from nasctl.genotypes.io import genotype_from_dict, genotype_to_dict
from nasctl.nets import build_network
from nasctl.nets.network import Cell
from nasctl.runs import RunDir
from nasctl.train.checkpoint import FORMAT, VERSION, read_checkpoint
from nasctl.train.config import RUNTIME_FIELDS, TrainConfig, config_from_dict
from nasctl.train.evaluate import evaluate_sums, summarize
from nasctl.train.step import (
    drop_path_at,
    make_optimizer,
    make_scheduler,
    to_device,
    train_step,
)

Event = Callable[[dict[str, Any]], None]


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    start_epoch: int
    best_top1: float
    best_epoch: int
    final: dict[str, Any]
    elapsed_s: float
    is_main: bool
    model: nn.Module = field(repr=False)


def resume_config(run_dir: str | os.PathLike[str], overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of a run, with runtime-only overrides (device, data_dir, ...).

    Changing anything that alters the numbers would not be a resumption, so it is refused."""
    ckpt = read_checkpoint(_resumable(run_dir))
    saved = config_from_dict(ckpt["config"])
    changed = {
        k: v for k, v in overrides.items() if k not in RUNTIME_FIELDS and getattr(saved, k) != v
    }
    if changed:
        diff = ", ".join(f"{k}={v!r} (saved {getattr(saved, k)!r})" for k, v in changed.items())
        raise NasctlError(f"--resume continues the saved run and cannot change {diff}")
    values = saved.to_dict()
    values.update({k: v for k, v in overrides.items() if k in RUNTIME_FIELDS})
    return config_from_dict(values, "command line")


def train(
    genotype: Genotype | str | None,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    resume: bool = False,
    recipe: str | None = None,
    on_event: Event | None = None,
) -> TrainResult:
    """Train ``genotype`` with ``cfg`` into the run folder ``out``.

    With ``resume`` the run continues from ``out/last.pt`` exactly where it stopped (same
    data order, drop-path masks and optimizer state), and ``genotype`` may be None. Raises
    TrainingDiverged when the loss stops being finite; ``last.pt`` then still holds the
    last good epoch."""
    info, device = init_distributed(resolve_device(cfg.device))
    try:
        return _train(genotype, cfg, Path(out), resume, recipe, info, device, on_event)
    finally:
        cleanup(info)


def _train(genotype: Genotype | str | None, cfg: TrainConfig, out: Path, resume: bool,
           recipe: str | None, info: DistInfo, device: torch.device,
           on_event: Event | None) -> TrainResult:
    started = time.perf_counter()

    def emit(event: dict[str, Any]) -> None:
        if on_event is not None and info.is_main:
            on_event(event)

    ckpt = _prepare_resume(out, cfg, genotype) if resume else None
    if ckpt is None and _last(out).exists():
        raise NasctlError(
            f"{out} already holds a training run (last.pt); pass --resume to continue it "
            "or choose another --out"
        )
    if ckpt is not None:
        genotype = genotype_from_dict(ckpt["genotype"])
        recipe = recipe or ckpt.get("recipe")
    elif genotype is None:
        raise NasctlError("a genotype (file or zoo name) is needed unless resuming")
    elif isinstance(genotype, str):
        genotype = load_genotype(genotype)
    if cfg.batch_size % info.world_size:
        raise NasctlError(
            f"batch_size {cfg.batch_size} does not split evenly over {info.world_size} processes"
        )

    seed_everything(cfg.seed + info.rank, cfg.deterministic)
    num_classes = dataset_info(cfg.dataset).num_classes
    if cfg.download and not info.is_main:
        barrier(info)  # rank 0 downloads first; the others then read its files
    train_set = get_dataset(cfg.dataset, "train", cfg.data_dir, download=cfg.download,
                            augment=cfg.augment, cutout=cfg.cutout)
    test_set = get_dataset(cfg.dataset, "test", cfg.data_dir, download=cfg.download)
    if cfg.download and info.is_main:
        barrier(info)
    cuda = device.type == "cuda"
    train_loader = make_loader(train_set, cfg.batch_size // info.world_size, shuffle=True,
                               seed=cfg.seed, distributed=info.enabled,
                               num_workers=cfg.num_workers, pin_memory=cuda)
    # Each rank evaluates every world_size-th test image: exact sums, no padding duplicates.
    test_shard = Subset(test_set, range(info.rank, len(test_set), info.world_size))  # type: ignore[arg-type]
    test_loader = make_loader(test_shard, cfg.batch_size, shuffle=False,
                              num_workers=cfg.num_workers, pin_memory=cuda)

    net = build_network(genotype, dataset=cfg.dataset, C=cfg.channels, layers=cfg.layers,
                        auxiliary=cfg.auxiliary_weight > 0, num_classes=num_classes,
                        drop_path_on=cfg.drop_path_on)  # type: ignore[arg-type]
    network = {"dataset": cfg.dataset, "C": cfg.channels, "layers": cfg.layers,
               "num_classes": num_classes, "auxiliary": cfg.auxiliary_weight > 0,
               "drop_path_on": next((m.drop_path_on for m in net.modules() if isinstance(m, Cell)),
                                    None)}  # None: a chain network has no cells
    channels_last = cuda and cfg.channels_last
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = make_grad_scaler(device, cfg.amp)
    start_epoch, best = 0, {"top1": -1.0, "epoch": 0}
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best = int(ckpt["epoch"]), dict(ckpt["best"])
        states = ckpt.get("rng") or []
        if len(states) == info.world_size:
            set_rng_state(states[info.rank])
        else:  # a different number of processes: fresh, but still reproducible, streams
            seed_everything(cfg.seed + info.rank + 1000 * start_epoch, cfg.deterministic)
    model: nn.Module = net
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if cuda else None
        )
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    run = RunDir(out) if info.is_main else None
    if run is not None:
        if ckpt is not None:
            run.truncate_metrics(start_epoch)
        write_genotype(genotype, run.file("genotype.json"))
        run.write_config(_run_config(cfg, recipe, genotype, network, info, device, start_epoch))
    steps = len(train_loader) if cfg.steps_per_epoch is None else min(
        len(train_loader), cfg.steps_per_epoch)
    emit({"event": "start", "epochs": cfg.epochs, "start_epoch": start_epoch,
          "steps_per_epoch": steps, "device": str(device), "world_size": info.world_size,
          "run_dir": str(out)})

    final: dict[str, Any] = dict(ckpt["metrics"]) if ckpt is not None else {}
    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        net.drop_path_prob = drop_path_at(cfg, epoch)  # type: ignore[assignment]
        lr = optimizer.param_groups[0]["lr"]
        set_loader_epoch(train_loader, epoch)
        if train_loader.generator is not None:  # shuffle order is a function of (seed, epoch)
            train_loader.generator.manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
        for step, (images, labels) in enumerate(train_loader):
            if step >= steps:
                break
            images, labels = to_device(images, labels, device, channels_last)
            loss, logits = train_step(model, images, labels, optimizer, criterion, scaler, cfg,
                                      device)
            n = labels.shape[0]
            sums += torch.stack([loss.double() * n, (logits.argmax(1) == labels).sum().double(),
                                 torch.tensor(float(n), dtype=torch.float64, device=device)])
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                loss_sum, correct, count = _check_finite(sums, info, epoch, step, out, start_epoch)
                emit({"event": "step", "epoch": epoch + 1, "epochs": cfg.epochs,
                      "step": step + 1, "steps": steps, "loss": loss_sum / count,
                      "top1": 100.0 * correct / count})
        scheduler.step()
        loss_sum, correct, count = _check_finite(sums, info, epoch, steps - 1, out, start_epoch)

        if info.enabled:  # evaluate (and save) rank 0's BatchNorm statistics on every rank
            for buffer in net.buffers():
                dist.broadcast(buffer, 0)
        test = summarize(all_reduce_sum(
            evaluate_sums(net, test_loader, device, cfg.amp, channels_last, cfg.eval_batches),
            info))
        if not torch.isfinite(torch.tensor(test["loss"])):
            raise _diverged(out, epoch, start_epoch, f"test loss is {test['loss']}")
        elapsed = time.perf_counter() - epoch_start
        final = {"epoch": epoch + 1, "lr": lr, "drop_path": net.drop_path_prob,
                 "train_loss": loss_sum / count, "train_top1": 100.0 * correct / count,
                 "test_loss": test["loss"], "test_top1": test["top1"], "test_top5": test["top5"],
                 "test_samples": test["samples"], "time_s": elapsed,
                 "images_per_s": count / elapsed}
        is_best = test["top1"] > best["top1"]
        if is_best:
            best = {"top1": test["top1"], "epoch": epoch + 1}
        state = _checkpoint(net, optimizer, scheduler, scaler, cfg, recipe, genotype, network,
                            epoch, final, best, info)
        if run is not None:
            run.save_checkpoint("last.pt", state)
            if is_best:
                run.save_checkpoint("best.pt", state)
            run.append_metrics(final)
        barrier(info)
        emit({"event": "epoch", **final, "best": is_best, "best_top1": best["top1"],
              "epochs": cfg.epochs})

    total = time.perf_counter() - started
    if run is not None and final:
        run.write_report({"genotype": genotype.name, "epochs": cfg.epochs,
                          "best_top1": best["top1"], "best_epoch": best["epoch"],
                          "final": final, "elapsed_s": total, "world_size": info.world_size})
    emit({"event": "done", "best_top1": best["top1"], "best_epoch": best["epoch"],
          "elapsed_s": total})
    return TrainResult(run_dir=out, epochs=cfg.epochs, start_epoch=start_epoch,
                       best_top1=best["top1"], best_epoch=int(best["epoch"]), final=final,
                       elapsed_s=total, is_main=info.is_main, model=net)


def _last(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / "last.pt"


def _resumable(run_dir: str | os.PathLike[str]) -> Path:
    path = _last(run_dir)
    if not path.exists():
        raise CheckpointError(f"{run_dir}: nothing to resume (no last.pt)")
    return path


def _prepare_resume(out: Path, cfg: TrainConfig,
                    genotype: Genotype | str | None) -> dict[str, Any]:
    path = _resumable(out)
    ckpt = read_checkpoint(path)
    saved = config_from_dict(ckpt["config"])
    changed = [k for k, v in cfg.to_dict().items()
               if k not in RUNTIME_FIELDS and getattr(saved, k) != v]
    if changed:
        raise NasctlError(
            f"--resume continues the saved run and cannot change {', '.join(changed)}"
        )
    if genotype is not None:
        given = load_genotype(genotype) if isinstance(genotype, str) else genotype
        if given.content_hash() != genotype_from_dict(ckpt["genotype"]).content_hash():
            raise NasctlError(f"{path} was trained with a different genotype than the one given")
    return ckpt


def _check_finite(sums: torch.Tensor, info: DistInfo, epoch: int, step: int, out: Path,
                  start_epoch: int) -> tuple[float, float, float]:
    """Sum the running metrics over ranks (one sync per log interval) and stop on NaN/inf."""
    loss_sum, correct, count = all_reduce_sum(sums.clone(), info).tolist()
    if not torch.isfinite(torch.tensor(loss_sum)):
        raise _diverged(out, epoch, start_epoch, f"training loss is {loss_sum} by step {step + 1}")
    return loss_sum, correct, count


def _diverged(out: Path, epoch: int, start_epoch: int, what: str) -> TrainingDiverged:
    kept = (f"{_last(out)} keeps epoch {epoch}" if epoch > 0 or start_epoch > 0
            else "no checkpoint was written yet")
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1}: {what}; {kept} (try a lower lr or grad_clip)"
    )


def _checkpoint(net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: torch.amp.GradScaler, cfg: TrainConfig, recipe: str | None,
                genotype: Genotype,
                network: dict[str, Any], epoch: int, metrics: dict[str, Any],
                best: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    """The checkpoint dict (see nasctl.train.checkpoint). Collective under DDP."""
    model_state = net.state_dict()
    rng: list[Any] = [rng_state()]
    weights = [_weights_digest(model_state)]
    if info.enabled:
        rng = [None] * info.world_size
        weights = [""] * info.world_size
        dist.all_gather_object(rng, rng_state())
        dist.all_gather_object(weights, _weights_digest(model_state))
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.contiguous() for k, v in model_state.items()},
        "genotype": genotype_to_dict(genotype),
        "network": network,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "epoch": epoch + 1,
        "rng": rng,
        "config": cfg.to_dict(),
        "recipe": recipe,
        "metrics": metrics,
        "best": best,
        "distributed": {"world_size": info.world_size, "weights_sha256": weights},
        "versions": _versions(),
    }


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's bytes: equal on every rank when DDP kept them in sync."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"nasctl": __version__, "torch": str(torch.__version__),
            "python": platform.python_version(), "cuda": torch.version.cuda, "cudnn": cudnn}


def _run_config(cfg: TrainConfig, recipe: str | None, genotype: Genotype,
                network: dict[str, Any], info: DistInfo, device: torch.device,
                start_epoch: int) -> dict[str, Any]:
    return {
        "command": "train",
        "recipe": recipe,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "genotype": {"name": genotype.name, "sha256": genotype.content_hash()},
        "network": network,
        "world_size": info.world_size,
        "device": str(device),
        "resumed_from_epoch": start_epoch or None,
        "versions": _versions(),
    }
