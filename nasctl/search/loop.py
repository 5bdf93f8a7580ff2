"""The bilevel search loop: alternating architecture and weight steps, per-epoch metrics,
atomic checkpoints, resume, data-parallel runs, and the final genotype."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from nasctl.errors import CheckpointError, NasctlError, TrainingDiverged
from nasctl.genotypes import Genotype, write_genotype
from nasctl.runs import RunDir, load_checkpoint
from nasctl.search.discretize import build_genotype
from nasctl.search.methods import Discretized, SearchMethod, get_method
from nasctl.search.supernet import Recompute, SearchNetwork

Event = dict[str, Any]
OnEvent = Callable[[Event], None]
CHECKPOINT = "checkpoint.pt"
# Settings a resumed run must share with the run it continues.
_RESUME_KEYS = ("method", "method_options", "dataset", "ops", "init_channels", "layers", "nodes",
                "batch_size", "epochs", "seed", "train_portion", "steps_per_epoch", "augment")


@dataclass
class SearchConfig:
    """Every search setting; ``None`` hyperparameters take the method's official defaults."""

    method: str = "fairdarts"
    method_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    train_portion: float = 0.5
    # Both search halves read with the training augmentation, as the official DARTS and
    # FairDARTS searches do (CIFAR: crop 32 pad 4, flip). None: on except for digits.
    augment: bool | None = None
    ops: list[str] | None = None
    init_channels: int = 16
    layers: int = 8
    nodes: int = 4
    batch_size: int | None = None
    epochs: int | None = None
    lr: float | None = None
    lr_min: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    arch_lr: float | None = None
    arch_weight_decay: float | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = True
    recompute: str = "auto"  # off | full-res | all (see SearchNetwork); auto: CPU full-res
    workers: int = 0
    steps_per_epoch: int | None = None
    probe_batches: int = 4
    kill_after_steps: int | None = None  # fault injection for the resume test (SIGKILL)

    def resolved(self, method: SearchMethod) -> SearchConfig:
        """A copy with the method's defaults filled in."""
        h = method.hyper
        return replace(
            self,
            ops=list(self.ops) if self.ops else list(method.default_ops),
            augment=self.dataset != "digits" if self.augment is None else self.augment,
            batch_size=self.batch_size or h.batch_size,
            epochs=self.epochs or h.epochs,
            lr=h.lr if self.lr is None else self.lr,
            lr_min=h.lr_min if self.lr_min is None else self.lr_min,
            momentum=h.momentum if self.momentum is None else self.momentum,
            weight_decay=h.weight_decay if self.weight_decay is None else self.weight_decay,
            grad_clip=h.grad_clip if self.grad_clip is None else self.grad_clip,
            arch_lr=h.arch_lr if self.arch_lr is None else self.arch_lr,
            arch_weight_decay=(h.arch_weight_decay if self.arch_weight_decay is None
                               else self.arch_weight_decay),
            method_options={**self.method_options, **method.options()},
        )


@dataclass
class SearchResult:
    genotype: Genotype
    run_dir: Path
    files: dict[str, str]
    epochs_run: int
    notes: list[str]
    alphas: dict[str, list[list[float]]]  # raw architecture parameters at the end


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """DARTS' per-epoch cosine annealing (CosineAnnealingLR with T_max=epochs)."""
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs))


def _emit(on_event: OnEvent | None, event: Event) -> None:
    if on_event is not None:
        on_event(event)


def _edges_doc(d: Discretized) -> dict[str, list[list[Any]]]:
    return {"normal": [list(e) for e in d.normal.edges],
            "reduce": [list(e) for e in d.reduce.edges]}


class _Search:
    """One search run's state; ``run()`` drives it."""

    def __init__(self, config: SearchConfig, out: str | os.PathLike[str], resume: bool,
                 on_event: OnEvent | None) -> None:
        from nasctl.device import resolve_device, seed_everything
        from nasctl.distributed import init_distributed

        self.method = get_method(config.method, **config.method_options)
        self.cfg = config.resolved(self.method)
        self.on_event = on_event
        self.dist, self.device = init_distributed(resolve_device(config.device))
        self.run_dir = RunDir(out) if self.dist.is_main else None
        self.out = Path(out)
        seed_everything(self.cfg.seed, self.cfg.deterministic)
        self._build_data()
        self._build_model()
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.notes: list[str] = []
        checkpoint = self.out / CHECKPOINT
        if resume:
            self._resume(checkpoint)
        elif checkpoint.exists():
            raise NasctlError(f"{self.out} already holds a search (checkpoint.pt); pass --resume "
                              "to continue it or choose another --out")

    # -- setup -----------------------------------------------------------------------------
    def _build_data(self) -> None:
        from nasctl.data import dataset_info, get_dataset, make_loader, search_split

        cfg = self.cfg
        assert cfg.batch_size is not None
        self.info = dataset_info(cfg.dataset)
        train = get_dataset(cfg.dataset, "train", cfg.data_dir, cfg.download,
                            augment=bool(cfg.augment))
        w_set, a_set = search_split(train, cfg.train_portion, cfg.seed)
        if min(len(w_set), len(a_set)) < cfg.batch_size * self.dist.world_size:
            raise NasctlError(f"--batch-size {cfg.batch_size} is larger than a search half "
                              f"({min(len(w_set), len(a_set))} images per half)")
        kw = {"distributed": self.dist.enabled, "drop_last": True, "num_workers": cfg.workers,
              "pin_memory": self.device.type == "cuda"}
        self.w_loader = make_loader(w_set, cfg.batch_size, True, seed=cfg.seed, **kw)
        self.a_loader = make_loader(a_set, cfg.batch_size, True, seed=cfg.seed + 1, **kw)
        self.probe_loader = make_loader(a_set, cfg.batch_size, False, drop_last=True)
        steps = min(len(self.w_loader), len(self.a_loader))
        self.steps = min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps

    def _build_model(self) -> None:
        cfg = self.cfg
        assert cfg.ops is not None and cfg.lr is not None and cfg.arch_lr is not None
        self.model = SearchNetwork(
            cfg.ops, self.method.activation, channels=cfg.init_channels, layers=cfg.layers,
            num_nodes=cfg.nodes, num_classes=self.info.num_classes,
            node_norm=self.method.node_norm, alpha_init=self.method.alpha_init,
            recompute=self._recompute(),
        )
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.weights = self.model.weight_parameters()
        self.alphas = self.model.arch_parameters()
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay)
        self.a_opt = torch.optim.Adam(self.alphas, cfg.arch_lr, betas=self.method.hyper.arch_betas,
                                      weight_decay=cfg.arch_weight_decay)
        from nasctl.device import make_grad_scaler

        self.scaler = make_grad_scaler(self.device, cfg.amp)

    def _recompute(self) -> Recompute:
        if self.cfg.recompute == "auto":
            return "full-res" if self.device.type == "cpu" else "off"
        if self.cfg.recompute not in ("off", "full-res", "all"):
            raise NasctlError(f"--recompute must be auto, off, full-res or all, got "
                              f"{self.cfg.recompute!r}")
        return self.cfg.recompute  # type: ignore[return-value]

    def _resume(self, path: Path) -> None:
        from nasctl.device import set_rng_state

        if not path.exists():
            raise CheckpointError(f"--resume: no {CHECKPOINT} in {self.out} (nothing to resume)")
        state = load_checkpoint(path)
        saved = state.get("config", {})
        mine = asdict(self.cfg)
        diff = [k for k in _RESUME_KEYS if saved.get(k) != mine.get(k)]
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in diff)
            raise CheckpointError(f"--resume: settings differ from the interrupted run ({detail})")
        try:
            self.model.load_state_dict(state["model"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
            self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{path}: does not fit this search ({exc})") from None
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.history = list(state["history"])
        if self.run_dir is not None:
            self.run_dir.truncate_metrics(self.start_epoch)
        _emit(self.on_event, {"event": "resumed", "epoch": self.start_epoch})

    # -- steps -----------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, y: torch.Tensor,
              regularize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from nasctl.device import autocast

        with autocast(self.device, self.cfg.amp):
            logits = self.model(x)
            ce = F.cross_entropy(logits.float(), y)
        loss = ce
        if regularize:
            reg = self.method.regularizer(self.model)
            if reg is not None:
                loss = ce + reg
        return loss, ce, (logits.argmax(1) == y).sum()

    def _all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        from nasctl.distributed import all_reduce_mean

        if not self.dist.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = all_reduce_mean(torch.cat([g.flatten() for g in grads]), self.dist)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def _arch_step(self, xa: torch.Tensor, ya: torch.Tensor,
                   xw: torch.Tensor, yw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.a_opt.zero_grad(set_to_none=True)
        if self.method.unrolled:
            from nasctl.search.unrolled import unrolled_arch_grads

            grads, loss, correct = unrolled_arch_grads(self, xw, yw, xa, ya)
            if self.scaler.is_enabled():  # the scaler unscales in step()
                grads = [g * self.scaler.get_scale() for g in grads]
        else:
            for p in self.weights:  # only alpha gradients: no weight grads, fewer saved tensors
                p.requires_grad_(False)
            try:
                loss, _ce, correct = self._loss(xa, ya, regularize=True)
                grads = torch.autograd.grad(self.scaler.scale(loss), self.alphas)
            finally:
                for p in self.weights:
                    p.requires_grad_(True)
        for p, g in zip(self.alphas, grads, strict=True):
            p.grad = g
        self._all_reduce_grads(self.alphas)
        self.scaler.step(self.a_opt)
        return loss.detach(), correct

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.w_opt.zero_grad(set_to_none=True)
        for p in self.alphas:
            p.requires_grad_(False)
        try:
            # The zero-one loss has no weight gradient, so the weight step uses CE alone.
            loss, _ce, correct = self._loss(x, y, regularize=False)
            self.scaler.scale(loss).backward()
        finally:
            for p in self.alphas:
                p.requires_grad_(True)
        self._all_reduce_grads(self.weights)
        self.scaler.unscale_(self.w_opt)
        torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip or math.inf)
        self.scaler.step(self.w_opt)
        return loss.detach(), correct

    def _batches(self, epoch: int) -> Iterator[tuple[int, tuple[Any, Any]]]:
        from nasctl.data import set_loader_epoch

        for k, loader in enumerate((self.w_loader, self.a_loader)):
            set_loader_epoch(loader, epoch)
            if loader.generator is not None:  # same order after a resume
                loader.generator.manual_seed(self.cfg.seed * 100_003 + epoch * 2 + k)
        pairs = zip(self.w_loader, self.a_loader, strict=False)
        for step, pair in enumerate(pairs):
            if step >= self.steps:
                break
            yield step, pair

    def _to(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    # -- epochs ----------------------------------------------------------------------------
    def run(self) -> SearchResult:
        from nasctl.distributed import all_reduce_sum

        cfg = self.cfg
        assert cfg.epochs is not None and cfg.lr is not None and cfg.lr_min is not None
        if self.run_dir is not None and self.start_epoch == 0:
            self.run_dir.write_config(self._config_doc())
        if not self.history:
            self.history.append(self._arch_record(0))
        _emit(self.on_event, {"event": "start", "epoch": self.start_epoch, "epochs": cfg.epochs,
                              "steps": self.steps, "world_size": self.dist.world_size})
        global_step = self.start_epoch * self.steps
        for epoch in range(self.start_epoch, cfg.epochs):
            lr = cosine_lr(epoch, cfg.epochs, cfg.lr, cfg.lr_min)
            for group in self.w_opt.param_groups:
                group["lr"] = lr
            self.model.train()
            sums = torch.zeros(6, dtype=torch.float64, device=self.device)
            started = time.perf_counter()
            for step, ((xw, yw), (xa, ya)) in self._batches(epoch):
                xw, yw = self._to(xw, yw)
                xa, ya = self._to(xa, ya)
                a_loss, a_correct = self._arch_step(xa, ya, xw, yw)
                w_loss, w_correct = self._weight_step(xw, yw)
                self.scaler.update()
                step_stats = torch.stack([a_loss.double() * len(ya), a_correct.double(),
                                          torch.tensor(float(len(ya)), device=self.device),
                                          w_loss.double() * len(yw), w_correct.double(),
                                          torch.tensor(float(len(yw)), device=self.device)])
                all_reduce_sum(step_stats, self.dist)
                if not torch.isfinite(step_stats).all():
                    self._diverged(epoch, step, step_stats)
                sums += step_stats
                global_step += 1
                _emit(self.on_event, {"event": "step", "epoch": epoch + 1, "step": step + 1,
                                      "steps": self.steps,
                                      "arch_loss": float(step_stats[0] / step_stats[2]),
                                      "weight_loss": float(step_stats[3] / step_stats[5])})
                if cfg.kill_after_steps is not None and global_step >= cfg.kill_after_steps:
                    os.kill(os.getpid(), signal.SIGKILL)
            self._end_epoch(epoch, lr, sums, time.perf_counter() - started)
        return self._finish()

    def _diverged(self, epoch: int, step: int, stats: torch.Tensor) -> None:
        which, value = ("architecture", stats[0]) if not torch.isfinite(stats[0]) else (
            "weight", stats[3])
        last = (f"the last good checkpoint is {self.out / CHECKPOINT}" if epoch > self.start_epoch
                or self.start_epoch > 0 else "no checkpoint was written yet")
        raise TrainingDiverged(f"epoch {epoch + 1} step {step + 1}: the {which} loss became "
                               f"{float(value)}; {last} (try a lower --lr / --arch-lr)")

    def _arch_record(self, epoch: int) -> dict[str, Any]:
        w_normal, w_reduce = self.model.arch_weights()
        return {"epoch": epoch, "normal": w_normal.detach().cpu().tolist(),
                "reduce": w_reduce.detach().cpu().tolist()}

    def _discretize(self) -> Discretized:
        probe = None
        if self.method.needs_probe:
            probe = (self._to(x, y) for _i, (x, y) in zip(range(self.cfg.probe_batches),
                                                           self.probe_loader, strict=False))
        return self.method.discretize(self.model, probe)

    def _end_epoch(self, epoch: int, lr: float, sums: torch.Tensor, seconds: float) -> None:
        s = sums.tolist()
        record = self._arch_record(epoch + 1)
        self.history.append(record)
        if self.run_dir is None:
            return
        current = self._discretize()
        for note in current.notes:
            _emit(self.on_event, {"event": "warning", "epoch": epoch + 1, "message": note})
        metrics = {
            "epoch": epoch + 1, "lr": lr, "seconds": round(seconds, 3),
            "arch_loss": s[0] / max(s[2], 1), "arch_acc": s[1] / max(s[2], 1),
            "weight_loss": s[3] / max(s[5], 1), "weight_acc": s[4] / max(s[5], 1),
            "arch_weights": {"normal": record["normal"], "reduce": record["reduce"]},
            "genotype": _edges_doc(current),
        }
        self.run_dir.append_metrics(metrics)
        from nasctl import atomic
        from nasctl.device import rng_state

        atomic.write_json(self.run_dir.file("arch_history.json"),
                          {"ops": self.cfg.ops, "edges": self.model.edges,
                           "history": self.history})
        self.run_dir.save_checkpoint(CHECKPOINT, {
            "epoch": epoch + 1, "model": self.model.state_dict(),
            "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "history": self.history,
            "config": asdict(self.cfg),
        })
        _emit(self.on_event, {"event": "epoch", **{k: v for k, v in metrics.items()
                                                   if k != "arch_weights"}})

    def _finish(self) -> SearchResult:
        from nasctl.distributed import barrier

        final = self._discretize()
        self.notes.extend(final.notes)
        genotype = build_genotype(final.normal, final.reduce, self.cfg.nodes,
                                  name=f"{self.cfg.method}-{self.cfg.dataset}-s{self.cfg.seed}",
                                  provenance=self._provenance(final))
        files: dict[str, str] = {}
        if self.run_dir is not None:
            path = write_genotype(genotype, self.run_dir.file("genotype.json"))
            files["genotype"] = str(path)
            for name in ("config.json", "metrics.jsonl", "arch_history.json", CHECKPOINT):
                files[name.split(".")[0]] = str(self.run_dir.file(name))
            from nasctl.search.plots import write_plots

            plots, plot_notes = write_plots(self.run_dir.path, self.history, self.cfg.ops or [],
                                            self.model.edges, self.cfg.method, genotype)
            files.update(plots)
            self.notes.extend(plot_notes)
            self.run_dir.write_report({"genotype": genotype.name, "files": files,
                                       "notes": self.notes, "hash": genotype.content_hash()})
        barrier(self.dist)
        _emit(self.on_event, {"event": "done", "files": files, "notes": self.notes})
        alphas = {"normal": self.model.alpha_normal.detach().cpu().tolist(),
                  "reduce": self.model.alpha_reduce.detach().cpu().tolist()}
        return SearchResult(genotype, self.out, files, len(self.history) - 1, self.notes, alphas)

    def _provenance(self, final: Discretized) -> dict[str, Any]:
        import nasctl

        cfg = self.cfg
        discretization = dict(final.settings)
        fallback = [n for n, c in (("normal", final.normal), ("reduce", final.reduce))
                    if c.fallback]
        if fallback:
            discretization["fallback_strongest_per_node"] = fallback
        return {"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed,
                "epochs": cfg.epochs, "steps_per_epoch": self.steps, "ops": cfg.ops,
                "init_channels": cfg.init_channels, "layers": cfg.layers,
                "discretization": discretization,
                "nasctl_version": getattr(nasctl, "__version__", "unknown"),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _config_doc(self) -> dict[str, Any]:
        import platform

        doc = asdict(self.cfg)
        doc.pop("kill_after_steps", None)
        doc["world_size"] = self.dist.world_size
        doc["device_resolved"] = str(self.device)
        doc["versions"] = {"torch": torch.__version__, "python": platform.python_version()}
        return doc


def run_search(config: SearchConfig, out: str | os.PathLike[str], resume: bool = False,
               on_event: OnEvent | None = None) -> SearchResult:
    """Run (or with ``resume`` continue) a search writing into ``out``; rank 0 writes."""
    from nasctl.distributed import cleanup

    search = _Search(config, out, resume, on_event)
    try:
        return search.run()
    finally:
        cleanup(search.dist)
