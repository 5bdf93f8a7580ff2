"""Search settings are validated once, by table, before any work starts: every bad value
exits 2 with one line naming the setting and leaves no run folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import assert_refused, in_process, nasctl

from nasctl.errors import NasctlError
from nasctl.search import SearchConfig, resolve_search_config
from nasctl.search.config import rules

BAD_FLAGS = [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--epochs", "-1"], "epochs must be >= 1"),
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--batch-size", "-4"], "batch_size must be >= 1"),
    (["--steps-per-epoch", "0"], "steps_per_epoch must be >= 1"),
    (["-C", "0"], "channels must be >= 1"),
    (["--init-channels", "-3"], "channels must be >= 1"),
    (["--layers", "0"], "layers must be >= 3"),
    (["--nodes", "0"], "nodes must be >= 1"),
    (["--ops", "sep_conv_3x3,bogus"], "unknown ops 'bogus'"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "0"], "lr must be > 0"),
    (["--arch-lr", "inf"], "arch_lr must be a finite number"),
    (["--train-portion", "1.5"], "train_portion must be > 0 and < 1"),
    (["--method", "nope"], "method must be one of"),
    (["--space", "hexagon"], "space must be one of cell, mbconv"),
    (["--dataset", "mnist"], "dataset must be one of"),
    (["--amp", "fp8"], "amp must be one of off, bf16, fp16"),
    (["--recompute", "sometimes"], "recompute must be one of"),
    (["--space", "mbconv", "--width-mult", "0"], "width_mult must be > 0"),
    (["--space", "mbconv", "--macs-target", "-5"], "mac_target must be > 0"),
    (["--mac-target", "0"], "mac_target must be > 0"),
    (["--space", "mbconv", "--layers", "5"], "--layers does not apply to --method fairdarts "
     "and --space mbconv"),
    (["--space", "mbconv", "--ops", "sep_conv_3x3"], "--ops does not apply"),
    (["--ops", "none"], "ops must name at least one op other than none"),
    (["--set", "ops=,,"], "ops must name at least one op other than none"),
    (["--ops", "sep_conv_3x3,sep_conv_3x3"], "ops names sep_conv_3x3 more than once"),
    (["-C", "100000"], "channels must be >= 1 and <= 1024"),
    (["--layers", "5000"], "layers must be >= 3 and <= 100"),
    (["--epochs", "1000000000000000000000000"], "epochs must be >= 1 and <= 100000"),
    (["--seed", "99999999999999999999"], "seed must be >= 0 and <= 4294967295"),
    (["--lr", "0.1", "--set", "lr=0.2"], "--set lr=... and its flag --lr are both given"),
    (["--latency-target", "5"], "--latency-target needs --latency-table"),
    (["--amp", "bf16", "--device", "cpu"], "--amp bf16 needs a CUDA device"),
    (["--data-dir", "/tmp"], "digits ships inside nasctl: --data-dir and --download do not apply"),
    (["--space", "mbconv", "--layout", "tiny"], "layout must be one of proxyless-s2"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--set", "bogus=1"], "unknown setting 'bogus'"),
    (["--set", "lr=fast"], "lr must be float"),
    (["--method", "darts", "--w01", "1"], "--w01 does not apply to --method darts"),
    (["--threshold", "2"], "threshold must be > 0 and < 1"),
    (["--set", "method_options={}"], "method_options must be a table of settings"),
    (["--loss01", "l3"], "loss01 must be one of l2, l1"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS,
                         ids=[" ".join(f) for f, _m in BAD_FLAGS])
def test_bad_search_settings_are_refused_in_one_line(tmp_path: Path, flags: list[str],
                                                     message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert_refused(in_process(capsys, "search", "--dataset", "digits", *flags, "--out", str(out)),
                   message)
    assert not out.exists()


def test_every_rule_names_a_setting_and_its_bound() -> None:
    fields = set(SearchConfig.__dataclass_fields__)
    for key, rule in rules().items():
        assert key in fields, key
        assert rule.describe() != "any value", key


def test_a_config_file_and_set_are_merged_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "search.toml"
    path.write_text('method = "darts"\nchannels = 6\nepochs = 3\n'
                    '[method_options]\nunrolled = true\n')
    cfg = resolve_search_config(path, {"epochs": 4})
    assert (cfg.method, cfg.space_options["channels"], cfg.epochs) == ("darts", 6, 4)
    assert cfg.method_options == {"unrolled": True}
    path.write_text("epochs = 0\n")
    with pytest.raises(NasctlError, match="epochs must be >= 1"):
        resolve_search_config(path)


def test_train_refuses_non_finite_settings(tmp_path: Path) -> None:
    assert_refused(nasctl("train", "DARTS_V2", "--set", "lr=nan", "--out", str(tmp_path / "t")),
                   "lr must be a finite number")


@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "enas"], "method must be one of"),
    (["--train-epochs", "0"], "epochs"),
    (["--latency-target", "-1"], "--latency-target must be > 0 ms"),
])
def test_the_pipeline_checks_every_setting_before_writing(
        tmp_path: Path, flags: list[str], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p"
    assert_refused(in_process(capsys, "pipeline", *flags, "--out", str(out)), message)
    assert not out.exists()  # so the corrected command is not refused
