"""Search settings: one frozen config, merged from a file and the command line, validated
once by a table of rules (the mechanism :mod:`nasctl.settings` shares with training).

``None`` hyperparameters take the method's official values (see :class:`Hyper`);
:meth:`SearchConfig.resolved` fills them in, and the resolved config is what config.json
and the checkpoint record.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nasctl.settings import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_OPEN,
    Rule,
    check,
    coerce_all,
    field_types,
    refuse_changes,
    resume_changes,
)

if TYPE_CHECKING:
    from nasctl.search.methods import SearchMethod

AMP_CHOICES = ("off", "bf16", "fp16")
RECOMPUTE_CHOICES = ("auto", "off", "full-res", "all")

# Settings that change how a run computes, not what: a resumed run may change them.
RUNTIME_FIELDS = frozenset({"device", "data_dir", "download", "num_workers", "channels_last",
                            "recompute", "log_every"})


@dataclass(frozen=True)
class SearchConfig:
    """Every search setting. Space-specific ones apply to their space only."""

    method: str = "fairdarts"
    method_options: dict[str, Any] = field(default_factory=dict)
    space: str = "cell"
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    train_portion: float = 0.5
    # Both search halves read with the training augmentation, as the official DARTS and
    # FairDARTS searches do (CIFAR: crop 32 pad 4, flip). None: on except for digits.
    augment: bool | None = None
    # cell space
    ops: tuple[str, ...] | None = None
    channels: int = 16
    layers: int = 8
    nodes: int = 4
    recompute: str = "auto"  # off | full-res | all (see SearchNetwork); auto: CPU full-res
    # mbconv space
    layout: str = "proxyless-s2"
    width_mult: float = 1.0
    macs_target: float | None = None  # millions of MACs at macs_resolution / macs_classes
    macs_weight: float = 1.0
    macs_resolution: int = 224
    macs_classes: int = 1000
    # optimisation (None: the method's official value)
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
    num_workers: int = 0
    steps_per_epoch: int | None = None
    probe_batches: int = 4
    log_every: int = 10  # steps between progress events (and loss checks)

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["ops"] = None if self.ops is None else list(self.ops)
        return doc

    def resolved(self, method: SearchMethod) -> SearchConfig:
        """A copy with the method's defaults filled in."""
        h = method.hyper

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return replace(
            self,
            ops=tuple(self.ops) if self.ops else tuple(method.default_ops),
            augment=pick(self.augment, self.dataset != "digits"),
            batch_size=pick(self.batch_size, h.batch_size), epochs=pick(self.epochs, h.epochs),
            lr=pick(self.lr, h.lr), lr_min=pick(self.lr_min, h.lr_min),
            momentum=pick(self.momentum, h.momentum),
            weight_decay=pick(self.weight_decay, h.weight_decay),
            grad_clip=pick(self.grad_clip, h.grad_clip), arch_lr=pick(self.arch_lr, h.arch_lr),
            arch_weight_decay=pick(self.arch_weight_decay, h.arch_weight_decay),
            method_options={**self.method_options, **method.options()},
        )


FIELDS: dict[str, Any] = field_types(SearchConfig)


def rules() -> dict[str, Rule]:
    """The allowed value of every numeric and enumerated setting; names come from the
    registries (methods, spaces, datasets)."""
    from nasctl.data import DATASETS
    from nasctl.search.methods import method_names
    from nasctl.search.space import space_names

    return {
        "method": Rule(choices=tuple(method_names())),
        "space": Rule(choices=tuple(space_names())),
        "dataset": Rule(choices=tuple(DATASETS)),
        "train_portion": UNIT_OPEN,
        "channels": AT_LEAST_ONE, "layers": Rule(low=3), "nodes": Rule(low=1, high=16),
        "recompute": Rule(choices=RECOMPUTE_CHOICES),
        "width_mult": POSITIVE, "macs_target": POSITIVE, "macs_weight": NON_NEGATIVE,
        "macs_resolution": Rule(low=8), "macs_classes": AT_LEAST_ONE,
        "batch_size": AT_LEAST_ONE, "epochs": AT_LEAST_ONE,
        "lr": POSITIVE, "lr_min": NON_NEGATIVE, "momentum": Rule(low=0, high=1, open_high=True),
        "weight_decay": NON_NEGATIVE, "grad_clip": NON_NEGATIVE, "arch_lr": POSITIVE,
        "arch_weight_decay": NON_NEGATIVE, "seed": NON_NEGATIVE,
        "amp": Rule(choices=AMP_CHOICES), "num_workers": NON_NEGATIVE,
        "steps_per_epoch": AT_LEAST_ONE, "probe_batches": AT_LEAST_ONE,
        "log_every": AT_LEAST_ONE,
    }


def check_config(cfg: SearchConfig) -> SearchConfig:
    """Every rule, the space's own checks (known ops, layout) and the method's options,
    in one line."""
    from nasctl.errors import NasctlError
    from nasctl.search.methods import get_method, method_names
    from nasctl.search.space import get_space, space_names

    extra = get_space(cfg.space).problems(cfg) if cfg.space in space_names() else []
    if cfg.method in method_names():
        try:
            get_method(cfg.method, **cfg.method_options)  # the method checks its options
        except NasctlError as exc:
            extra.append(str(exc))
    check(cfg, rules(), "search", extra)
    return cfg


def config_from_dict(values: dict[str, Any], where: str) -> SearchConfig:
    return check_config(SearchConfig(**coerce_all(FIELDS, values, where)))


def resolve_search_config(config_file: str | os.PathLike[str] | None = None,
                          overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Defaults < config file < overrides, type-checked and range-checked."""
    from nasctl.train.config import load_config_file

    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(coerce_all(FIELDS, load_config_file(config_file), str(config_file)))
    values.update(coerce_all(FIELDS, overrides or {}, "command line"))
    return check_config(SearchConfig(**values))


def resume_search_config(saved: dict[str, Any], overrides: dict[str, Any]) -> SearchConfig:
    """The saved (resolved) config of a run with runtime-only overrides; changing anything
    else is refused in one line naming it (the rule ``nasctl train --resume`` follows)."""
    cfg = config_from_dict(saved, "the saved run")
    given = coerce_all(FIELDS, overrides, "command line")
    options = given.pop("method_options", None) or {}
    changes = resume_changes(cfg, given, RUNTIME_FIELDS)
    changes += [f"{k}={v!r} (saved {cfg.method_options.get(k)!r})" for k, v in options.items()
                if cfg.method_options.get(k) != v]
    refuse_changes(changes)
    return check_config(replace(cfg, **{k: v for k, v in given.items() if k in RUNTIME_FIELDS}))
