"""The final-training loop: single process, or DDP under torchrun.

Rank 0 writes the run folder (config.json, genotype.json, metrics.jsonl, last.pt, best.pt,
report.json); every rank reads the same data split by a DistributedSampler, and metrics are
summed across ranks before they are reported. Progress goes to ``on_event`` (rank 0 only).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Subset

from nasctl.data import dataset_info, get_dataset, make_loader
from nasctl.device import (
    make_grad_scaler,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from nasctl.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from nasctl.errors import CheckpointError, NasctlError, RunInterrupted, TrainingDiverged
from nasctl.genotypes import Genotype, load_genotype, write_genotype
from nasctl.genotypes.io import genotype_from_dict, genotype_to_dict
from nasctl.nets import build_network
from nasctl.nets.network import Cell
from nasctl.runs import (
    EpochDone,
    OnEvent,
    RunDir,
    RunDone,
    RunEvent,
    RunStarted,
    StepDone,
    diverged,
    gather_objects,
    open_run,
    reseed_loaders,
    versions,
)
from nasctl.settings import refuse_changes, resume_changes
from nasctl.train.checkpoint import KIND, read_checkpoint
from nasctl.train.config import RUNTIME_FIELDS, TrainConfig, config_from_dict
from nasctl.train.evaluate import evaluate_sums, summarize
from nasctl.train.step import (
    drop_path_at,
    make_optimizer,
    make_scheduler,
    to_device,
    train_step,
)

LAST = "last.pt"


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
    saved = config_from_dict(_saved_config(Path(run_dir)), "the saved run")
    refuse_changes(resume_changes(saved, overrides, RUNTIME_FIELDS))
    values = saved.to_dict()
    values.update({k: v for k, v in overrides.items() if k in RUNTIME_FIELDS})
    return config_from_dict(values, "command line")


def train(
    genotype: Genotype | str | None,
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    resume: bool = False,
    recipe: str | None = None,
    on_event: OnEvent | None = None,
) -> TrainResult:
    """Train ``genotype`` with ``cfg`` into the run folder ``out``.

    With ``resume`` the run continues from ``out/last.pt`` exactly where it stopped (same
    data order, drop-path masks and optimizer state), and ``genotype`` may be None. Raises
    TrainingDiverged when the loss stops being finite; ``last.pt`` then still holds the
    last good epoch."""
    info, device = init_distributed(resolve_device(cfg.device))
    try:
        with open_run(out, resume, LAST, "training run", enabled=info.is_main) as run:
            return _train(genotype, cfg, Path(out), run, resume, recipe, info, device,
                          on_event)
    finally:
        cleanup(info)


def _train(genotype: Genotype | str | None, cfg: TrainConfig, out: Path, run: RunDir | None,
           resume: bool, recipe: str | None, info: DistInfo, device: torch.device,
           on_event: OnEvent | None) -> TrainResult:
    started = time.perf_counter()

    def emit(event: RunEvent) -> None:
        if on_event is not None and info.is_main:
            on_event(event)

    # A folder that recorded its config but no checkpoint yet starts again from the start.
    ckpt = _prepare_resume(out, cfg, genotype) if resume and _last(out).exists() else None
    if ckpt is not None:
        genotype = genotype_from_dict(ckpt["genotype"])
        recipe = recipe or ckpt.get("recipe")
    elif genotype is None and resume and (out / "genotype.json").exists():
        genotype = load_genotype(out / "genotype.json")
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

    if run is not None:
        run.truncate_metrics(start_epoch)
        if ckpt is not None:  # a crash may have cut the records after the checkpoint short
            _restore_records(run, ckpt)
        write_genotype(genotype, run.file("genotype.json"))
        run.write_config(_run_config(cfg, recipe, genotype, network, info, device, start_epoch))
    steps = len(train_loader) if cfg.steps_per_epoch is None else min(
        len(train_loader), cfg.steps_per_epoch)
    emit(RunStarted(start_epoch, cfg.epochs, steps, info.world_size, str(device), str(out)))

    final: dict[str, Any] = dict(ckpt["metrics"]) if ckpt is not None else {}
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            epoch_start = time.perf_counter()
            net.drop_path_prob = drop_path_at(cfg, epoch)  # type: ignore[assignment]
            lr = optimizer.param_groups[0]["lr"]
            reseed_loaders([train_loader], cfg.seed, epoch)
            model.train()
            sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss*n, correct
            count = 0  # images, on the host: no device sync per step
            for step, (images, labels) in enumerate(train_loader):
                if step >= steps:
                    break
                images, labels = to_device(images, labels, device, channels_last)
                loss, logits = train_step(model, images, labels, optimizer, criterion, scaler,
                                          cfg, device)
                count += labels.shape[0]
                sums += torch.stack([loss.double() * labels.shape[0],
                                     (logits.argmax(1) == labels).sum().double()])
                if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                    loss_sum, correct, seen = _check_finite(sums, count, info, epoch, step, out)
                    emit(StepDone(epoch + 1, cfg.epochs, step + 1, steps,
                                  {"loss": loss_sum / seen, "top1": 100.0 * correct / seen}))
            scheduler.step()
            loss_sum, correct, images = _check_finite(sums, count, info, epoch, steps - 1, out)

            if info.enabled:  # evaluate (and save) rank 0's BatchNorm statistics everywhere
                for buffer in net.buffers():
                    dist.broadcast(buffer, 0)
            test = summarize(all_reduce_sum(
                evaluate_sums(net, test_loader, device, cfg.amp, channels_last,
                              cfg.eval_batches), info))
            if not torch.isfinite(torch.tensor(test["loss"])):
                raise _diverged(out, epoch, f"test loss is {test['loss']}")
            elapsed = time.perf_counter() - epoch_start
            final = {"epoch": epoch + 1, "lr": lr, "drop_path": net.drop_path_prob,
                     "train_loss": loss_sum / images, "train_top1": 100.0 * correct / images,
                     "test_loss": test["loss"], "test_top1": test["top1"],
                     "test_top5": test["top5"],
                     "test_samples": test["samples"], "time_s": elapsed,
                     "images_per_s": images / elapsed}
            is_best = test["top1"] > best["top1"]
            if is_best:
                best = {"top1": test["top1"], "epoch": epoch + 1}
            state = _checkpoint(net, optimizer, scheduler, scaler, cfg, recipe, genotype,
                                network, epoch, final, best, info)
            if run is not None:  # checkpoints first, then the record describing them
                run.save_checkpoint(LAST, KIND, state)
                if is_best:
                    run.save_checkpoint("best.pt", KIND, state)
                run.append_metrics(final)
            barrier(info)
            emit(EpochDone(epoch + 1, cfg.epochs, {**final, "best_top1": best["top1"]},
                           best=is_best))
    except KeyboardInterrupt:
        raise RunInterrupted(out, "train", epoch + 1, _last(out).exists()) from None

    total = time.perf_counter() - started
    if run is not None and final:
        run.write_report({"genotype": genotype.name, "epochs": cfg.epochs,
                          "best_top1": best["top1"], "best_epoch": best["epoch"],
                          "final": final, "elapsed_s": total, "world_size": info.world_size})
    emit(RunDone({name: str(out / name) for name in (LAST, "best.pt", "report.json")}))
    return TrainResult(run_dir=out, epochs=cfg.epochs, start_epoch=start_epoch,
                       best_top1=best["top1"], best_epoch=int(best["epoch"]), final=final,
                       elapsed_s=total, is_main=info.is_main, model=net)


def _last(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / LAST


def _restore_records(run: RunDir, ckpt: dict[str, Any]) -> None:
    """Bring best.pt and metrics.jsonl up to ``ckpt`` (last.pt), which is written first."""
    epoch = int(ckpt["epoch"])
    best_saved = run.exists("best.pt") and int(read_checkpoint(run.file("best.pt"))["epoch"])
    if int(ckpt["best"]["epoch"]) == epoch and best_saved != epoch:
        run.save_checkpoint("best.pt", KIND, ckpt)
    if not any(r.get("epoch") == epoch for r in run.read_metrics()):
        run.append_metrics(ckpt["metrics"])


def _saved_config(run_dir: Path) -> dict[str, Any]:
    """The config a run folder recorded: its checkpoint's, else its config.json's (a run
    killed before its first checkpoint)."""
    if _last(run_dir).exists():
        return dict(read_checkpoint(_last(run_dir))["config"])
    if not (run_dir / "config.json").exists():
        raise CheckpointError(f"{run_dir}: nothing to resume (no {LAST} or config.json)")
    doc = RunDir(run_dir).read_config()
    if doc.get("command") != "train" or not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"{run_dir}/config.json is not a nasctl training config")
    return dict(doc["config"])


def _prepare_resume(out: Path, cfg: TrainConfig,
                    genotype: Genotype | str | None) -> dict[str, Any]:
    path = _last(out)
    ckpt = read_checkpoint(path)
    saved = config_from_dict(ckpt["config"])
    refuse_changes(resume_changes(saved, cfg.to_dict(), RUNTIME_FIELDS))
    recorded = RunDir(out).read_config() if (out / "config.json").exists() else None
    if recorded is not None:  # the run that wrote this folder's records wrote last.pt
        genotype_hash = genotype_from_dict(ckpt["genotype"]).content_hash()
        record = recorded.get("config")
        record = {k: v for k, v in record.items() if hasattr(saved, k)} \
            if isinstance(record, dict) else None
        if (recorded.get("genotype") or {}).get("sha256") != genotype_hash or \
                record is None or resume_changes(saved, record, RUNTIME_FIELDS):
            raise CheckpointError(f"{path} was not written by the run recorded in "
                                  f"{out / 'config.json'} (another genotype or settings); "
                                  "resume it from its own folder")
    if genotype is not None:
        given = load_genotype(genotype) if isinstance(genotype, str) else genotype
        if given.content_hash() != genotype_from_dict(ckpt["genotype"]).content_hash():
            raise NasctlError(f"{path} was trained with a different genotype than the one given")
    if int(ckpt["epoch"]) >= saved.epochs and (out / "report.json").exists():
        raise NasctlError(f"{out} is a complete run ({saved.epochs} of {saved.epochs} "
                          "epochs); nothing to resume (its report stays as it is)")
    return ckpt


def _check_finite(sums: torch.Tensor, count: int, info: DistInfo, epoch: int, step: int,
                  out: Path) -> tuple[float, float, float]:
    """Sum the running metrics over ranks (one sync per log interval) and stop on NaN/inf."""
    counted = torch.cat([sums, torch.tensor([float(count)], dtype=sums.dtype,
                                            device=sums.device)])
    loss_sum, correct, total = all_reduce_sum(counted, info).tolist()
    if not torch.isfinite(torch.tensor(loss_sum)):
        raise _diverged(out, epoch, f"training loss is {loss_sum} by step {step + 1}")
    return loss_sum, correct, total


def _diverged(out: Path, epoch: int, what: str) -> TrainingDiverged:
    return diverged(f"training diverged: {what}", epoch + 1, _last(out),
                    "a lower lr or grad_clip")


def _checkpoint(net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                scaler: torch.amp.GradScaler, cfg: TrainConfig, recipe: str | None,
                genotype: Genotype,
                network: dict[str, Any], epoch: int, metrics: dict[str, Any],
                best: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    """The checkpoint dict (see nasctl.train.checkpoint). Collective under DDP."""
    model_state = net.state_dict()
    rng = gather_objects(rng_state(), info)
    weights = gather_objects(_weights_digest(model_state), info)
    return {
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
        "versions": versions(),
    }


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's bytes: equal on every rank when DDP kept them in sync."""
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
        "versions": versions(),
    }
