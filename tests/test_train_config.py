"""Training recipes, config files and overrides (no training here: fast)."""

from __future__ import annotations

import importlib.util

import pytest

from nasctl.errors import NasctlError
from nasctl.train import RECIPES, load_config_file, parse_assignments, resolve_config
from nasctl.train.config import TrainConfig


def test_cifar10_recipe_is_the_darts_setting() -> None:
    cfg, name = resolve_config("cifar10")
    assert name == "cifar10"
    assert (cfg.channels, cfg.layers, cfg.batch_size, cfg.epochs) == (36, 20, 96, 600)
    assert (cfg.lr, cfg.lr_schedule, cfg.momentum, cfg.weight_decay) == (
        0.025, "cosine", 0.9, 3e-4)
    assert (cfg.cutout, cfg.auxiliary_weight, cfg.drop_path, cfg.grad_clip) == (16, 0.4, 0.2, 5.0)


def test_imagenet_recipe_is_the_darts_setting() -> None:
    cfg, _ = resolve_config("imagenet")
    assert (cfg.channels, cfg.layers, cfg.batch_size, cfg.epochs) == (48, 14, 128, 250)
    assert (cfg.lr, cfg.lr_schedule, cfg.lr_gamma) == (0.1, "exponential", 0.97)
    assert (cfg.label_smoothing, cfg.auxiliary_weight, cfg.grad_clip) == (0.1, 0.4, 5.0)


def test_every_recipe_only_names_known_fields_and_validates() -> None:
    for name in RECIPES:
        cfg, _ = resolve_config(name)
        assert isinstance(cfg, TrainConfig)


def test_recipe_follows_the_dataset_when_not_given() -> None:
    assert resolve_config(None, overrides={"dataset": "cifar100"})[1] == "cifar10"
    assert resolve_config(None)[1] == "digits"


def test_precedence_recipe_then_file_then_command_line(tmp_path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text('recipe = "cifar10"\nepochs = 7\nlr = 0.5\namp = "bf16"\n')
    cfg, name = resolve_config(None, path, {"lr": 0.01, "steps_per_epoch": 3})
    assert name == "cifar10"
    assert cfg.epochs == 7 and cfg.amp == "bf16"  # from the file
    assert cfg.lr == 0.01 and cfg.steps_per_epoch == 3  # the command line wins
    assert cfg.channels == 36  # untouched recipe value
    # an explicit recipe beats the file's
    assert resolve_config("digits", path)[0].dataset == "digits"


def test_set_assignments_are_typed() -> None:
    values = parse_assignments(["lr=0.1", "drop-path-on=node", "augment=false", "eval_batches=none",
                                "epochs=3"])
    assert values == {"lr": 0.1, "drop_path_on": "node", "augment": False, "eval_batches": None,
                      "epochs": 3}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["nonsense=1"], "unknown setting 'nonsense'"),
        (["epochs=2.5"], "epochs must be int"),
        (["augment=maybe"], "augment must be bool"),
        (["lr"], "expected KEY=VALUE"),
    ],
)
def test_bad_assignments_are_refused(items: list[str], message: str) -> None:
    with pytest.raises(NasctlError, match=message):
        parse_assignments(items)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"layers": 2}, "layers must be >= 3"),
        ({"drop_path": 1.0}, "drop_path must be in"),
        ({"amp": "fp8"}, "amp must be one of"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ],
)
def test_out_of_range_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(NasctlError, match=message):
        resolve_config("digits", overrides=overrides)


def test_unknown_recipe_is_refused() -> None:
    with pytest.raises(NasctlError, match="unknown recipe 'mnist'"):
        resolve_config("mnist")


def test_config_file_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(NasctlError, match="bad.toml: cannot parse config"):
        load_config_file(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text("epoch = 3\n")
    with pytest.raises(NasctlError, match="unknown setting 'epoch'"):
        resolve_config(None, typo)
    with pytest.raises(NasctlError, match="no such config file"):
        load_config_file(tmp_path / "missing.toml")
    other = tmp_path / "cfg.ini"
    other.write_text("[x]\n")
    with pytest.raises(NasctlError, match="unknown config format"):
        load_config_file(other)


def test_yaml_config_needs_pyyaml_or_works(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 4\nrecipe: digits\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(NasctlError, match="YAML configs need PyYAML"):
            resolve_config(None, path)
    else:
        assert resolve_config(None, path)[0].epochs == 4
