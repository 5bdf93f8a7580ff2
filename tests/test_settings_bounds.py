"""Values from the command line, config files and checkpoints are checked before work
starts, with the limit stated: sizes, seeds, cutout against the image size, duplicate keys
in config files, and a checkpoint's network block under a strict schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli import assert_refused, in_process

from nasctl.genotypes import load_genotype
from nasctl.genotypes.io import genotype_to_dict

TRAIN = ["train", "DARTS_V2", "--recipe", "digits", "--device", "cpu"]


@pytest.mark.parametrize(("flags", "needle"), [
    (["--seed", "99999999999999999999"], "seed must be <= 4294967295"),
    (["--cutout", "100000"], "cutout must be <= 32 (the digits image size), got 100000"),
    (["-C", "100000"], "channels must be <= 512, got 100000"),
    (["--layers", "5000"], "layers must be <= 100, got 5000"),
    (["--epochs", "1" + "0" * 23], "epochs must be <= 100000"),
    (["--set", "batch_size=1000000"], "batch_size must be <= 8192"),
    (["--amp", "bf16"], "amp must be off with device cpu (mixed precision is CUDA only)"),
    (["--data-dir", "/data"], "data_dir does not apply to digits"),
    (["--lr", "0.1", "--set", "lr=0.2"], "lr given both as a flag and with --set"),
], ids=["seed", "cutout", "channels", "layers", "epochs", "batch", "amp-on-cpu",
        "data-dir-for-digits", "flag-and-set"])
def test_train_sizes_are_bounded(tmp_path: Path, flags: list[str], needle: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert_refused(in_process(capsys, *TRAIN, *flags, "--out", str(out)), needle)
    assert not out.exists()


@pytest.mark.parametrize(("name", "text"), [
    ("c.toml", "lr = 0.1\nlr = 0.2\n"),
    ("c.json", '{"lr": 0.1, "lr": 0.2}'),
    ("c.yaml", "lr: 0.1\nepochs: 2\nlr: 0.2\n"),
])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path: Path, name: str, text: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    if name.endswith(".yaml"):
        pytest.importorskip("yaml")
    (tmp_path / name).write_text(text)
    assert_refused(in_process(capsys, *TRAIN, "--config", str(tmp_path / name), "--out",
                              str(tmp_path / "run")), name, "cannot parse config")


NETWORK = {"dataset": "digits", "C": 4, "layers": 3, "num_classes": 10, "auxiliary": False,
           "drop_path_on": "edge"}


@pytest.mark.parametrize(("change", "needle"), [
    ({"bogus": 1}, '"network" has unknown bogus'),
    ({"C": "4"}, "C must be an integer from 1 to 512, got '4'"),
    ({"C": 4096}, "C must be an integer from 1 to 512, got 4096"),
    ({"layers": True}, "layers must be an integer from 3 to 100, got True"),
    ({"dataset": "mnist"}, "dataset must be one of"),
    ({"drop_path_on": "cell"}, "drop_path_on must be one of edge, node, none"),
], ids=["unknown-key", "string-channels", "huge-channels", "bool-layers", "dataset",
        "drop-path"])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_checkpoints_network_block_has_a_strict_schema(
        tmp_path: Path, change: dict, needle: str, command: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ck.pt"
    torch.save({"format": "nasctl-checkpoint", "version": 1, "kind": "train", "model": {},
                "genotype": genotype_to_dict(load_genotype("DARTS_V2")),
                "network": {**NETWORK, **change}}, path)
    args = ["eval", str(path)] if command == "eval" else ["export", str(path), "-o",
                                                         str(tmp_path / "e")]
    assert_refused(in_process(capsys, *args), str(path), needle)
