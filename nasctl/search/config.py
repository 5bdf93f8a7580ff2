"""Search settings: one frozen config, merged from a file and the command line, validated
once (the mechanism :mod:`nasctl.settings` shares with training).

The settings every search has are the fields of :class:`SearchConfig`, declared with
:func:`~nasctl.search.options.option`; the method's, the space's and the costs' own
settings are declared by those plugins and kept in ``method_options``, ``space_options``
and ``cost_options``. Files, ``--set`` and flags name every setting flat (``channels = 6``,
``w01 = 5``): :func:`route` puts each where it is declared, and refuses one that the chosen
method or space does not declare. ``None`` hyperparameters take the method's official
values (see :class:`Hyper`); :meth:`SearchConfig.resolved` fills them and every plugin
default in, and the resolved config is what config.json and the checkpoint record.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nasctl.errors import NasctlError
from nasctl.search.options import OptionSpec, Registry, as_dict, option, specs
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
)

if TYPE_CHECKING:
    from nasctl.search.methods import SearchMethod

AMP_CHOICES = ("off", "bf16", "fp16")
PLUGIN_FIELDS = ("method_options", "space_options", "cost_options")
# Sizes a CPU can hold: a bound keeps a typo (epochs 10**24) from a hang or a huge allocation.
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class SearchConfig:
    """The settings every search has, plus the chosen plugins' own (see module doc)."""

    method: str = option("fairdarts", "search method")
    space: str = option("cell", "search space")
    dataset: str = option("digits", "search dataset")
    data_dir: str | None = option(None, "folder holding the dataset", runtime=True)
    download: bool = option(False, "download CIFAR if missing (needs a network)",
                            flag="--download/--no-download", runtime=True)
    train_portion: float = option(0.5, "share of the training set for weights (rest: "
                                  "architecture)", UNIT_OPEN)
    # Both search halves read with the training augmentation, as the official DARTS and
    # FairDARTS searches do (CIFAR: crop 32 pad 4, flip). None: on except for digits.
    augment: bool | None = option(None, "read both search halves with the training "
                                  "augmentation (default: on, as the official searches; "
                                  "off for digits)", flag="--augment/--no-augment")
    # optimisation (None: the method's official value)
    batch_size: int | None = option(None, "batch size per step and half (default: the "
                                    "method's: fairdarts 128, darts/idarts 64)",
                                    Rule(low=1, high=MAX_BATCH))
    epochs: int | None = option(None, "epochs (default: the method's, 50)",
                                Rule(low=1, high=MAX_EPOCHS))
    lr: float | None = option(None, "weight learning rate (cosine-annealed)", POSITIVE)
    lr_min: float | None = option(None, "final weight learning rate", NON_NEGATIVE)
    momentum: float | None = option(None, "weight SGD momentum",
                                    Rule(low=0, high=1, open_high=True))
    weight_decay: float | None = option(None, "weight decay", NON_NEGATIVE)
    grad_clip: float | None = option(None, "weight gradient clip norm", NON_NEGATIVE)
    arch_lr: float | None = option(None, "architecture (Adam) learning rate", POSITIVE)
    arch_weight_decay: float | None = option(None, "architecture weight decay", NON_NEGATIVE)
    seed: int = option(0, "random seed", Rule(low=0, high=MAX_SEED))
    deterministic: bool = option(False, "deterministic algorithms",
                                 flag="--deterministic/--no-deterministic")
    device: str = option("auto", "auto, cpu, cuda, cuda:N", runtime=True)
    amp: str = option("off", "automatic mixed precision: off, bf16, fp16 (CUDA only)",
                      Rule(choices=AMP_CHOICES))
    channels_last: bool = option(True, "NHWC tensors (faster on CPU and CUDA)",
                                 flag="--channels-last/--no-channels-last", runtime=True)
    num_workers: int = option(0, "data loader workers", Rule(low=0, high=256),
                              aliases=("--workers",), runtime=True)
    steps_per_epoch: int | None = option(None, "limit steps per epoch", AT_LEAST_ONE,
                                         aliases=("--limit-batches",))
    probe_batches: int = option(4, "held-out batches the discretization may read (iDARTS)",
                                Rule(low=1, high=10_000))
    log_every: int = option(10, "steps between progress events (and loss checks)",
                            AT_LEAST_ONE, runtime=True, cli=False)
    method_options: dict[str, Any] = option({}, "the method's settings", cli=False)
    space_options: dict[str, Any] = option({}, "the space's settings", cli=False)
    cost_options: dict[str, Any] = option({}, "the costs' settings", cli=False)

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        for key in PLUGIN_FIELDS:
            doc[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in doc[key].items()}
        return doc

    def resolved(self, method: SearchMethod) -> SearchConfig:
        """A copy with the method's hyperparameters and every plugin default filled in."""
        from nasctl.search.methods import METHODS
        from nasctl.search.space import SPACES

        h = method.hyper

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        space = SPACES.create(self.space, self.space_options)
        return replace(
            self,
            augment=pick(self.augment, self.dataset != "digits"),
            batch_size=pick(self.batch_size, h.batch_size), epochs=pick(self.epochs, h.epochs),
            lr=pick(self.lr, h.lr), lr_min=pick(self.lr_min, h.lr_min),
            momentum=pick(self.momentum, h.momentum),
            weight_decay=pick(self.weight_decay, h.weight_decay),
            grad_clip=pick(self.grad_clip, h.grad_clip), arch_lr=pick(self.arch_lr, h.arch_lr),
            arch_weight_decay=pick(self.arch_weight_decay, h.arch_weight_decay),
            method_options=METHODS.create(self.method, self.method_options).options(),
            space_options=as_dict(space.resolved_options(method)),
            cost_options=_cost_defaults() | self.cost_options,
        )


def _cost_defaults() -> dict[str, Any]:
    from nasctl.search.cost import COSTS

    return {s.name: s.default for s in COSTS.all_specs()}


FIELDS: dict[str, Any] = field_types(SearchConfig)
CONFIG_SPECS: list[OptionSpec] = specs(SearchConfig, "search")


def rules() -> dict[str, Rule]:
    """The allowed value of every declared shared setting; names come from the registries
    (methods, spaces, datasets)."""
    from nasctl.data import DATASETS
    from nasctl.search.methods import METHODS
    from nasctl.search.space import SPACES

    declared = {s.name: s.rule for s in CONFIG_SPECS if s.rule is not None}
    return {"method": Rule(choices=tuple(METHODS.names())),
            "space": Rule(choices=tuple(SPACES.names())),
            "dataset": Rule(choices=tuple(DATASETS)), **declared}


def runtime_settings(cfg: SearchConfig) -> frozenset[str]:
    """The settings a resumed run may change: the declared runtime ones, shared and the
    chosen plugins' (e.g. the cell space's ``recompute``)."""
    from nasctl.search.cost import COSTS
    from nasctl.search.methods import METHODS
    from nasctl.search.space import SPACES

    plugin = METHODS.specs(cfg.method) + SPACES.specs(cfg.space) + COSTS.all_specs()
    return frozenset(s.name for s in CONFIG_SPECS + plugin if s.runtime)


def route(values: Mapping[str, Any], where: str,
          base: SearchConfig | None = None) -> dict[str, Any]:
    """Flat settings (a file, ``--set``, flags) as SearchConfig keyword arguments: shared
    settings as they are, every plugin setting in the dict of the plugin that declares it.
    A setting the chosen method or space does not declare is refused in one line naming
    the plugin it belongs to; one nobody declares is an unknown setting."""
    from nasctl.search.cost import COSTS
    from nasctl.search.methods import METHODS
    from nasctl.search.space import SPACES

    values = dict(values)
    base = base or SearchConfig()
    method = str(values.get("method", base.method))
    space = str(values.get("space", base.space))
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {k: {} for k in PLUGIN_FIELDS}
    for key in PLUGIN_FIELDS:  # a file may also give the plugin dicts whole
        given = values.pop(key, None)
        if given is not None:
            if not isinstance(given, dict):
                raise NasctlError(f"{where}: {key} must be a table of settings, got {given!r}")
            nested[key].update(given)
    owners: list[tuple[str, Registry[Any], str]] = [("method_options", METHODS, method),
                                                    ("space_options", SPACES, space)]
    elsewhere: dict[str, str] = {}
    for registry in (METHODS, SPACES):
        for s in registry.all_specs():
            elsewhere.setdefault(s.name, s.owner)
    cost_keys = {s.name for s in COSTS.all_specs()}
    for key, value in values.items():
        if key in FIELDS:
            out[key] = value
            continue
        target = next((slot for slot, registry, name in owners
                       if name in registry and key in {s.name for s in registry.specs(name)}),
                      None)
        if target is None and key in cost_keys:
            target = "cost_options"
        if target is None:
            if key in elsewhere:
                raise NasctlError(f"{_flag(key)} does not apply to --method {method} and "
                                  f"--space {space} (it is a setting of {elsewhere[key]})")
            raise NasctlError(f"{where}: unknown setting {key!r}")
        nested[target][key] = value
    for key, given in nested.items():
        if given:
            out[key] = {**getattr(base, key), **given}
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config(cfg: SearchConfig) -> SearchConfig:
    """Every rule, every plugin's declared options and its own checks, in one line."""
    from nasctl.search.cost import active_costs
    from nasctl.search.methods import METHODS
    from nasctl.search.space import SPACES

    extra: list[str] = []
    try:
        if cfg.method in METHODS:
            METHODS.create(cfg.method, cfg.method_options)
        if cfg.space in SPACES:
            extra += SPACES.create(cfg.space, cfg.space_options).problems(cfg)
        extra += [p for cost in active_costs(cfg) for p in cost.problems(cfg)]
    except NasctlError as exc:
        extra.append(str(exc))
    if cfg.amp != "off" and cfg.device == "cpu":
        extra.append(f"--amp {cfg.amp} needs a CUDA device (--device cpu given)")
    if cfg.dataset == "digits" and (cfg.data_dir is not None or cfg.download):
        extra.append("digits ships inside nasctl: --data-dir and --download do not apply")
    check(cfg, rules(), "search", extra)
    return cfg


def config_from_dict(values: Mapping[str, Any], where: str) -> SearchConfig:
    nested = {k: v for k, v in values.items() if k in PLUGIN_FIELDS}
    flat = coerce_all(FIELDS, {k: v for k, v in values.items() if k not in PLUGIN_FIELDS}, where)
    return check_config(SearchConfig(**flat, **nested))


def make_search_config(**values: Any) -> SearchConfig:
    """A checked config from flat settings (``make_search_config(channels=4, w01=5)``)."""
    return resolve_search_config(None, values)


def resolve_search_config(config_file: str | os.PathLike[str] | None = None,
                          overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """Defaults < config file < overrides, type-checked and range-checked."""
    from nasctl.train.config import load_config_file

    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(load_config_file(config_file))
    values.update(overrides or {})
    routed = route(values, str(config_file) if config_file else "command line")
    return config_from_dict(routed, "command line")


def resume_search_config(saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> SearchConfig:
    """The saved (resolved) config of a run with runtime-only overrides; changing anything
    else is refused in one line naming it (the rule ``nasctl train --resume`` follows)."""
    cfg = config_from_dict(saved, "the saved run")
    given = route(overrides, "command line", base=cfg)
    given_cfg = config_from_dict({**cfg.to_dict(), **given}, "command line")
    runtime = runtime_settings(cfg)
    changes = resume_differences(cfg, given_cfg, runtime)
    refuse_changes(changes)
    return given_cfg


def resume_differences(saved: SearchConfig, given: SearchConfig,
                       runtime: frozenset[str]) -> list[str]:
    """``key=new (saved old)`` for every non-runtime setting, shared or a plugin's, that
    differs between two configs."""
    def flat(cfg: SearchConfig) -> dict[str, Any]:
        doc = cfg.to_dict()
        for key in PLUGIN_FIELDS:
            doc.update(doc.pop(key))
        return doc

    old, new = flat(saved), flat(given)
    return [f"{k}={new.get(k)!r} (saved {old.get(k)!r})" for k in sorted(set(old) | set(new))
            if k not in runtime and old.get(k) != new.get(k)]
