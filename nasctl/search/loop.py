"""The one bilevel search loop, for every search space and method: alternating
architecture and weight steps, per-epoch records, atomic checkpoints, resume, data-parallel
runs, and the final genotype.

The space (``--space``) supplies the supernet, its choice groups, records and genotype;
the method (``--method``) its activation, regulariser, architecture-gradient rule and
discretization rule; the costs (:mod:`nasctl.search.budget`) their penalties, records and
report; the run folder machinery comes from :mod:`nasctl.runs`, shared with training.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasctl.distributed import DistInfo
from nasctl.errors import CheckpointError, NasctlError, RunInterrupted
from nasctl.genotypes import Genotype, write_genotype
from nasctl.runs import (
    EpochDone,
    OnEvent,
    RunDir,
    RunDone,
    RunStarted,
    RunWarning,
    StepDone,
    check_checkpoint,
    diverged,
    gather_objects,
    load_checkpoint,
    open_run,
    reseed_loaders,
    versions,
)
from nasctl.search.budget import Budget, CostReport, notes_for
from nasctl.search.config import (
    SearchConfig,
    check_config,
    config_from_dict,
    resume_differences,
    runtime_settings,
)
from nasctl.search.methods import get_method
from nasctl.search.space import discretizer_for, get_space
from nasctl.search.step import SearchStep
from nasctl.settings import refuse_changes

Emit = Callable[[Any], None]
CHECKPOINT = "checkpoint.pt"
KIND = "search"


@dataclass
class SearchResult:
    genotype: Genotype
    run_dir: Path
    files: dict[str, str]
    epochs_run: int
    notes: list[str]
    alphas: list[Any]  # the raw architecture parameters at the end, one entry per tensor
    fallback: list[str] = field(default_factory=list)  # parts the rule left to the fallback
    costs: list[CostReport] = field(default_factory=list)  # MACs, latency of the found network
    config: SearchConfig = field(default_factory=SearchConfig)  # the resolved settings


def saved_search_config(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The resolved config a run folder recorded (for ``--resume`` without flags)."""
    run = Path(out)
    if not (run / "config.json").exists():
        raise CheckpointError(f"--resume: nothing to resume in {run} (no config.json)")
    doc = RunDir(run).read_config()
    if doc.get("command") != KIND or not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"--resume: {run}/config.json is not a nasctl search config")
    return dict(doc["config"])


class Search:
    """One search run's state (every rank builds one); :meth:`run` drives it."""

    def __init__(self, config: SearchConfig, dist: DistInfo, device: torch.device) -> None:
        from nasctl.device import seed_everything

        self.method = get_method(config.method, **config.method_options)
        self.cfg = check_config(config.resolved(self.method))
        self.space = get_space(self.cfg.space, self.cfg.space_options)
        self.dist, self.device = dist, device
        seed_everything(self.cfg.seed, self.cfg.deterministic)
        self._build_data()
        model = self.space.build(self.cfg, self.method, self.info.num_classes, device)
        memory_format = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self.model: Any = model.to(device).to(memory_format=memory_format)
        self.budget = Budget(self.cfg, self.space, self.model)
        self.budget.check_targets(lambda b: self._genotype(  # a target no network can meet
            self.space.with_kept(None, self.space.cheapest(b.prices), self.model), self.model))
        self.step = SearchStep(self.model, self.method, self.cfg, device, dist,
                               cost_loss=self.budget.loss)
        assert self.cfg.epochs is not None and self.cfg.lr_min is not None
        # DARTS's schedule: the weight lr follows a cosine over the epochs, stepped per epoch.
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.step.w_opt, T_max=self.cfg.epochs, eta_min=self.cfg.lr_min)
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.last_record: dict[str, Any] | None = None  # the checkpoint's metrics record

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
        kw: dict[str, Any] = {"distributed": self.dist.enabled, "drop_last": True,
              "num_workers": cfg.num_workers, "pin_memory": self.device.type == "cuda"}
        self.w_loader = make_loader(w_set, cfg.batch_size, True, seed=cfg.seed, **kw)
        self.a_loader = make_loader(a_set, cfg.batch_size, True, seed=cfg.seed + 1, **kw)
        self.probe_loader = make_loader(a_set, cfg.batch_size, False, drop_last=True)
        steps = min(len(self.w_loader), len(self.a_loader))
        self.steps = min(steps, cfg.steps_per_epoch) if cfg.steps_per_epoch else steps

    def restore(self, path: Path) -> None:
        """Continue from ``path`` (a search checkpoint of this config's run)."""
        from nasctl.device import set_rng_state

        state = check_checkpoint(load_checkpoint(path), path, KIND)
        saved = config_from_dict(state["config"], str(path))
        refuse_changes(resume_differences(saved, self.cfg, runtime_settings(saved)))
        try:
            self.model.load_state_dict(state["model"])
            self.step.load_state_dict(state["optimizers"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: does not fit this search ({first})") from None
        states = state["rng"]
        if len(states) == self.dist.world_size:
            set_rng_state(states[self.dist.rank])
        self.start_epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.last_record = dict(state["record"])

    # -- epochs ----------------------------------------------------------------------------
    def run(self, run: RunDir | None, out: Path, on_event: OnEvent | None) -> SearchResult:
        def emit(event: Any) -> None:
            if on_event is not None and self.dist.is_main:
                on_event(event)

        cfg = self.cfg
        assert cfg.epochs is not None
        if run is not None:
            if self.start_epoch == 0:  # first: a folder with a config is this run's
                run.write_config(self._config_doc())
            run.truncate_metrics(self.start_epoch)
            if self.start_epoch > 0 and self.last_record is not None:
                # a crash may have cut the records short
                self._write_records(run, self.last_record, resumed=True)
        if not self.history:
            self.history.append({"epoch": 0, **self.space.arch_record(self.model)})
        emit(RunStarted(self.start_epoch, cfg.epochs, self.steps, self.dist.world_size,
                        str(self.device), str(out)))
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                self._epoch(epoch, run, out, emit)
        except KeyboardInterrupt:
            raise RunInterrupted(out, KIND, epoch + 1, (out / CHECKPOINT).exists()) from None
        return self._finish(run, out, emit)

    def _batches(self, epoch: int) -> Iterator[tuple[int, tuple[Any, Any]]]:
        reseed_loaders((self.w_loader, self.a_loader), self.cfg.seed, epoch)
        for step, pair in enumerate(zip(self.w_loader, self.a_loader, strict=False)):
            if step >= self.steps:
                break
            yield step, pair

    def _epoch(self, epoch: int, run: RunDir | None, out: Path, emit: Emit) -> None:
        from nasctl.distributed import all_reduce_sum

        lr = self.scheduler.get_last_lr()[0]
        self.model.train()
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        counts = [0, 0]  # architecture and weight images, on the host: no device sync
        started = time.perf_counter()
        totals: list[float] = [0.0] * 6
        for step, ((xw, yw), (xa, ya)) in self._batches(epoch):
            xw, yw = self.step.to(xw, yw)
            xa, ya = self.step.to(xa, ya)
            sums += self.step.step(xa, ya, xw, yw)
            counts[0] += len(ya)
            counts[1] += len(yw)
            if (step + 1) % self.cfg.log_every == 0 or step + 1 == self.steps:
                # one sync per log interval: sum over ranks, check, report
                reduced = torch.cat([sums, torch.tensor(counts, dtype=torch.float64,
                                                        device=self.device)])
                totals = all_reduce_sum(reduced, self.dist).tolist()
                for name, value in (("architecture", totals[0]), ("weight", totals[2])):
                    if not torch.isfinite(torch.tensor(value)):
                        raise diverged(f"the {name} loss became {value} by step {step + 1}",
                                       epoch + 1, out / CHECKPOINT, "a lower --lr / --arch-lr")
                assert self.cfg.epochs is not None
                emit(StepDone(epoch + 1, self.cfg.epochs, step + 1, self.steps,
                              {"arch_loss": totals[0] / max(totals[4], 1),
                               "weight_loss": totals[2] / max(totals[5], 1)}))
        self.scheduler.step()
        n_arch, n_weight = max(totals[4], 1), max(totals[5], 1)
        metrics = {"epoch": epoch + 1, "lr": lr, "seconds": round(time.perf_counter() - started, 3),
                   "arch_loss": totals[0] / n_arch, "arch_acc": totals[1] / n_arch,
                   "weight_loss": totals[2] / n_weight, "weight_acc": totals[3] / n_weight}
        self._end_epoch(epoch, metrics, run, emit)

    def _discretize(self) -> Any:
        probe = None
        if self.method.needs_probe:
            probe = (self.step.to(x, y) for _i, (x, y) in zip(range(self.cfg.probe_batches),
                                                               self.probe_loader, strict=False))
        return discretizer_for(self.space, self.method)(self.model, probe)

    def _end_epoch(self, epoch: int, metrics: dict[str, Any], run: RunDir | None,
                   emit: Emit) -> None:
        from nasctl.device import rng_state

        record = {"epoch": epoch + 1, **self.space.arch_record(self.model)}
        rng = gather_objects(rng_state(), self.dist)  # collective: every rank takes part
        if run is None:
            self.history.append(record)
            return
        current = self._discretize()
        for note in current.notes:
            emit(RunWarning(epoch + 1, note))
        costs = self.budget.record(current, self._genotype(current, self.model))
        if costs:
            record["costs"] = costs
        self.history.append(record)
        metrics = {**metrics, "arch_weights": self.space.arch_record(self.model),
                   "genotype": self.space.choice_doc(current), **({"costs": costs} if costs
                                                                 else {})}
        # The checkpoint first, then the records that describe it (see nasctl.runs); the
        # checkpoint carries its epoch's record, so a resume can restore a cut-off one.
        run.save_checkpoint(CHECKPOINT, KIND, {
            "epoch": epoch + 1, "model": self.model.state_dict(),
            "optimizers": self.step.state_dict(), "scheduler": self.scheduler.state_dict(),
            "rng": rng, "history": self.history, "record": metrics,
            "config": self.cfg.to_dict(), "versions": versions(),
        })
        self._write_records(run, metrics, resumed=False)
        assert self.cfg.epochs is not None
        emit(EpochDone(epoch + 1, self.cfg.epochs,
                       {k: v for k, v in metrics.items() if k != "arch_weights"}))

    def _write_records(self, run: RunDir, metrics: dict[str, Any], resumed: bool) -> None:
        """arch_history.json and the epoch's metrics line; on resume only if a crash left
        it out (the metrics file is read back only then)."""
        from nasctl import atomic

        atomic.write_json(run.file("arch_history.json"),
                          {"space": self.cfg.space, **self.space.labels(self.model),
                           "history": self.history})
        if not resumed or not any(r.get("epoch") == metrics["epoch"]
                                  for r in run.read_metrics()):
            run.append_metrics(metrics)

    def _finish(self, run: RunDir | None, out: Path, emit: Emit) -> SearchResult:
        from nasctl.distributed import barrier

        cfg = self.cfg
        final, repairs = self.budget.repaired(self._discretize(),
                                              lambda c: self._genotype(c, self.model))
        fallback = self.space.fallback(final)
        notes = list(final.notes)
        settings = {**final.settings, **self.budget.provenance(repairs)}
        genotype = self.space.genotype(self.model, final, cfg,
                                       f"{cfg.method}-{cfg.dataset}-s{cfg.seed}",
                                       self._provenance(settings, fallback))
        costs = self.budget.report(genotype, repairs)
        notes.extend(notes_for(costs))
        files: dict[str, str] = {}
        if run is not None:
            files["genotype"] = str(write_genotype(genotype, run.file("genotype.json")))
            for name in ("config.json", "metrics.jsonl", "arch_history.json", CHECKPOINT):
                files[name.split(".")[0]] = str(run.file(name))
            plots, plot_notes = self.space.plots(run.path, self.history, self.model, cfg,
                                                 genotype)
            files.update(plots)
            notes.extend(plot_notes)
            if any(c.target is not None for c in costs):
                from nasctl.search.plots import write_cost_plot

                files.update(write_cost_plot(run.path, self.history, costs))
            files["report"] = str(run.file("report.json"))
            run.write_report({"genotype": genotype.name, "hash": genotype.content_hash(),
                              "space": cfg.space, "fallback": fallback,
                              "arch_weights": self.history[-1],
                              "costs": [c.to_dict() for c in costs], "files": files,
                              "notes": notes})
        barrier(self.dist)
        emit(RunDone(files, notes))
        alphas = [p.detach().cpu().tolist() for p in self.model.arch_parameters()]
        return SearchResult(genotype, out, files, len(self.history) - 1, notes, alphas,
                            fallback, costs, cfg)

    def _genotype(self, choice: Any, model: Any) -> Genotype:
        """The genotype of ``choice`` without provenance (what a cost prices)."""
        return self.space.genotype(model, choice, self.cfg, "current", {})

    def _provenance(self, settings: dict[str, Any], fallback: list[str]) -> dict[str, Any]:
        import nasctl

        cfg = self.cfg
        discretization = dict(settings)
        if fallback:
            discretization["fallback_strongest_per_node"] = fallback
        return {"method": cfg.method, "dataset": cfg.dataset, "seed": cfg.seed,
                "epochs": cfg.epochs, "steps_per_epoch": self.steps,
                "discretization": discretization,
                "nasctl_version": getattr(nasctl, "__version__", "unknown"),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _config_doc(self) -> dict[str, Any]:
        return {"command": KIND, "config": self.cfg.to_dict(),
                "world_size": self.dist.world_size, "device": str(self.device),
                "versions": versions()}


def run_search(config: SearchConfig, out: str | os.PathLike[str], resume: bool = False,
               on_event: OnEvent | None = None) -> SearchResult:
    """Run (or with ``resume`` continue) a search writing into ``out``; rank 0 writes.

    ``resume`` continues from ``out/checkpoint.pt``; a folder that recorded its config but
    no checkpoint yet (killed in its first epoch) starts again from the beginning. A
    resumed run may change only runtime settings (see ``RUNTIME_FIELDS``)."""
    from nasctl.device import resolve_device
    from nasctl.distributed import cleanup, init_distributed

    root = Path(out)
    dist, device = init_distributed(resolve_device(config.device))
    try:
        with open_run(root, resume, CHECKPOINT, "search", enabled=dist.is_main) as run:
            search = Search(config, dist, device)
            if resume and (root / CHECKPOINT).exists():
                search.restore(root / CHECKPOINT)
            return search.run(run, root, on_event)
    finally:
        cleanup(dist)
