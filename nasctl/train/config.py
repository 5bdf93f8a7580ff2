"""Training settings: a recipe, then a config file, then command-line overrides.

``resolve_config`` is the one place that merges them; every value is type-checked and
range-checked, and a problem names its source (``--set``, the file, ...).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasctl import settings
from nasctl.errors import NasctlError
from nasctl.train.recipes import RECIPE_FOR_DATASET, RECIPES

LR_SCHEDULES = ("cosine", "exponential")
AMP_CHOICES = ("off", "bf16", "fp16")
DROP_PATH_ON = ("edge", "node")

# Settings that do not change the numbers a run computes; a resumed run may change them.
RUNTIME_FIELDS = frozenset({"device", "data_dir", "download", "num_workers", "channels_last",
                            "log_every"})


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a final-training run. Defaults are the DARTS CIFAR-10 recipe."""

    dataset: str = "cifar10"
    channels: int = 36
    layers: int = 20
    batch_size: int = 96  # global: split across ranks under torchrun
    epochs: int = 600
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine (to lr_min) | exponential (x lr_gamma per epoch)
    lr_min: float = 0.0
    lr_gamma: float = 0.97
    momentum: float = 0.9
    weight_decay: float = 3e-4
    label_smoothing: float = 0.0
    auxiliary_weight: float = 0.4  # 0 builds the network without the auxiliary head
    drop_path: float = 0.2  # final probability, ramped linearly from 0 over the epochs
    drop_path_on: str | None = None  # edge | node; None: by genotype (see build_network)
    grad_clip: float = 5.0  # max grad norm; 0 disables clipping
    cutout: int = 16
    augment: bool = True
    seed: int = 0
    deterministic: bool = False
    amp: str = "off"  # off | bf16 | fp16 (CUDA only)
    channels_last: bool = True  # CUDA only
    device: str = "auto"
    data_dir: str | None = None
    download: bool = False
    num_workers: int = 0
    steps_per_epoch: int | None = None  # limit training batches per epoch (smoke tests)
    eval_batches: int | None = None  # limit evaluation batches
    log_every: int = 20  # steps between progress events (and loss checks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, Any] = typing.get_type_hints(TrainConfig)


def recipe_names() -> list[str]:
    return list(RECIPES)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML, YAML (when PyYAML is installed) or JSON file of settings.

    A top-level ``recipe`` key picks the recipe the file's settings apply to."""
    p = Path(path)
    if not p.is_file():
        raise NasctlError(f"{p}: no such config file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            with p.open("rb") as fh:
                doc: Any = tomllib.load(fh)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise NasctlError(
                    f"{p}: YAML configs need PyYAML (pip install pyyaml); or write it as TOML"
                ) from None
            doc = yaml.load(p.read_text(), Loader=_unique_key_loader(yaml)) or {}
        elif suffix == ".json":
            doc = json.loads(p.read_text(), object_pairs_hook=_unique_keys)
        else:
            raise NasctlError(f"{p}: unknown config format {suffix!r} (use .toml, .yaml or .json)")
    except NasctlError:
        raise
    except Exception as exc:  # tomllib / yaml / json each raise their own parse errors
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NasctlError(f"{p}: cannot parse config: {first}") from None
    if not isinstance(doc, dict):
        raise NasctlError(f"{p}: a config file must hold a table of settings")
    return doc


class DuplicateKey(ValueError):
    """A key given twice in one table of a config file (TOML refuses these itself)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _unique_key_loader(yaml: Any) -> Any:
    """PyYAML's safe loader, refusing a key given twice (it keeps the last one silently)."""
    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            keys = [self.construct_object(k, deep=deep) for k, _v in node.value]
            repeated = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
            if repeated is not None:
                raise DuplicateKey(f"duplicate key {repeated!r} (line {node.start_mark.line + 1})")
            return super().construct_mapping(node, deep=deep)

    return Loader


def resolve_config(
    recipe: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[TrainConfig, str]:
    """Merge recipe < config file < overrides; returns the config and the recipe name.

    Without a recipe (from the argument or the file), the one for the dataset is used
    (``digits`` when no dataset is given either)."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = dict(load_config_file(config_file))
    file_recipe = file_values.pop("recipe", None)
    overrides = dict(overrides or {})
    name = recipe or file_recipe
    if name is None:
        dataset = overrides.get("dataset", file_values.get("dataset", "digits"))
        name = RECIPE_FOR_DATASET.get(str(dataset), "digits")
    if name not in RECIPES:
        raise NasctlError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    values = dict(RECIPES[name])
    values.update(_coerce_all(file_values, f"{config_file}"))
    values.update(_coerce_all(overrides, "command line"))
    return check_config(TrainConfig(**values)), name


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["lr=0.1", "drop_path_on=node"]`` -> typed values (for ``--set``)."""
    return settings.parse_assignments(items, FIELDS)


def config_from_dict(values: dict[str, Any], where: str = "checkpoint") -> TrainConfig:
    return check_config(TrainConfig(**_coerce_all(values, where)))


def _coerce_all(values: dict[str, Any], where: str) -> dict[str, Any]:
    return settings.coerce_all(FIELDS, values, where)


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Range checks that the type alone cannot express."""
    from nasctl.data import DATASETS
    from nasctl.settings import MAX_BATCH, MAX_CELLS, MAX_CHANNELS, MAX_EPOCHS, MAX_SEED

    problems = [f"{key} must be a finite number, got {value}"
                for key, value in cfg.to_dict().items()
                if isinstance(value, float) and not math.isfinite(value)]
    for key in ("channels", "layers", "batch_size", "epochs", "log_every"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key} must be >= 1")
    if cfg.layers < 3:
        problems.append("layers must be >= 3 (a DARTS network has two reduction cells)")
    limits = (("channels", MAX_CHANNELS), ("layers", MAX_CELLS), ("epochs", MAX_EPOCHS),
              ("batch_size", MAX_BATCH), ("seed", MAX_SEED))
    problems += [f"{key} must be <= {limit}, got {getattr(cfg, key)}"
                 for key, limit in limits if getattr(cfg, key) > limit]
    if cfg.seed < 0:
        problems.append("seed must be >= 0")
    size = DATASETS[cfg.dataset].input_size if cfg.dataset in DATASETS else None
    if size is not None and cfg.cutout > size:
        problems.append(f"cutout must be <= {size} (the {cfg.dataset} image size), got "
                        f"{cfg.cutout}")
    for key in ("steps_per_epoch", "eval_batches"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            problems.append(f"{key} must be >= 1 or none")
    if cfg.lr <= 0:
        problems.append("lr must be > 0")
    for key in ("lr_min", "momentum", "weight_decay", "auxiliary_weight", "grad_clip",
                "num_workers", "cutout"):
        if getattr(cfg, key) < 0:
            problems.append(f"{key} must be >= 0")
    if cfg.lr_gamma <= 0:
        problems.append("lr_gamma must be > 0")
    if not 0 <= cfg.label_smoothing < 1:
        problems.append("label_smoothing must be in [0, 1)")
    if not 0 <= cfg.drop_path < 1:
        problems.append("drop_path must be in [0, 1)")
    if cfg.lr_schedule not in LR_SCHEDULES:
        problems.append(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
    if cfg.amp not in AMP_CHOICES:
        problems.append(f"amp must be one of {', '.join(AMP_CHOICES)}")
    if cfg.amp != "off" and cfg.device == "cpu":  # it would be recorded, never applied
        problems.append(f"amp must be off with device cpu (mixed precision is CUDA only), "
                        f"got {cfg.amp}")
    if cfg.dataset == "digits" and cfg.data_dir is not None:
        problems.append("data_dir does not apply to digits (the dataset is embedded)")
    if cfg.drop_path_on is not None and cfg.drop_path_on not in DROP_PATH_ON:
        problems.append(f"drop_path_on must be one of {', '.join(DROP_PATH_ON)} or none")
    if problems:
        raise NasctlError("bad training settings: " + "; ".join(problems))
    return cfg
