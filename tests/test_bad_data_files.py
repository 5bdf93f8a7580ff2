"""Damaged dataset folders and checkpoints that do not fit are refused in one line that
names the file and what to do, exit code 2, never a traceback."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import assert_refused, nasctl

from nasctl.data import get_dataset
from nasctl.errors import DataError
from nasctl.genotypes import load_genotype
from nasctl.genotypes.io import genotype_to_dict
from nasctl.nets import build_network


def _fake_cifar(root: Path) -> Path:
    """A tiny CIFAR-10 folder in torchvision's layout: every file a complete pickle (two
    images a batch), so only the checksums tell it from the published files."""
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    batch = {"data": np.zeros((2, 3 * 32 * 32), np.uint8), "labels": [0, 1]}
    for name, _md5 in CIFAR10.train_list + CIFAR10.test_list:
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": [f"class {i}" for i in range(10)]}
    (folder / CIFAR10.meta["filename"]).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return damage


def test_truncated_cifar_batch_is_named_with_the_fix(tmp_path: Path) -> None:
    folder = _fake_cifar(tmp_path)
    _truncate("data_batch_3")(folder)
    proc = nasctl("search", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                  "--out", str(tmp_path / "run"), "--epochs", "1", "--layers", "3",
                  "--init-channels", "4", "--batch-size", "2")
    assert_refused(proc, str(folder / "data_batch_3"), "is truncated",
                   "re-download it with --download")


@pytest.mark.parametrize(("damage", "expected"), [
    (_truncate("data_batch_3"), "data_batch_3 is truncated"),
    (lambda folder: (folder / "data_batch_2").write_bytes(b""), "data_batch_2 is truncated"),
    (lambda folder: (folder / "test_batch").unlink(), "test_batch is missing"),
    (lambda folder: (folder / "batches.meta").unlink(), "batches.meta is missing"),
    # complete pickles that are not the published files: the first one is named
    (lambda folder: None, "data_batch_1 does not match torchvision's checksum"),
], ids=["truncated", "empty", "missing batch", "missing meta", "not the published files"])
def test_damaged_cifar_folder_names_the_file(damage: Callable[[Path], None], expected: str,
                                             tmp_path: Path) -> None:
    damage(_fake_cifar(tmp_path))
    with pytest.raises(DataError, match="re-download it with --download") as info:
        get_dataset("cifar10", "train", tmp_path)
    assert expected in str(info.value)


def _checkpoint(path: Path, described: dict, edit: Callable[[dict], None] = lambda sd: None
                ) -> Path:
    """A nasctl training checkpoint of a tiny DARTS_V2 network (C=4, 3 cells)."""
    genotype = load_genotype("DARTS_V2")
    weights = build_network(genotype, dataset="cifar10", C=4, layers=3,
                            auxiliary=False).state_dict()
    edit(weights)
    network = {"dataset": "cifar10", "C": 4, "layers": 3, "num_classes": 10, **described}
    torch.save({"genotype": genotype_to_dict(genotype), "network": network,
                "model": weights, "epoch": 1}, path)
    return path


def _onnx_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", io[:1], io[1:])
    onnx.save(helper.make_model(graph), path)
    return path


def _junk(path: Path) -> Path:
    path.write_bytes(b"\x08\x07junk" * 64)  # starts like an ONNX file, is not one
    return path


def _swap_keys(weights: dict) -> None:
    weights["extra.weight"] = weights.pop("classifier.bias")


CHECKPOINTS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "weights of another width": (
        lambda d: _checkpoint(d / "wide.pt", {"C": 8}),
        ("do not fit", "of another shape (first stem.0.weight: checkpoint [12, 3, 3, 3], "
                       "network [24, 3, 3, 3])")),
    "a key missing and one unexpected": (
        lambda d: _checkpoint(d / "keys.pt", {}, _swap_keys),
        ("do not fit", "1 missing (first classifier.bias); 1 unexpected (first "
                       "extra.weight)")),
    "a weight that is not a tensor": (
        lambda d: _checkpoint(d / "int.pt", {}, lambda sd: sd.update({"classifier.bias": 3})),
        ("1 of another shape (first classifier.bias: checkpoint not a tensor, network [10])",)),
    "an ONNX file": (lambda d: _onnx_model(d / "model.onnx"),
                     ("this is an ONNX file: use it with nasctl bench",)),
    "an ONNX file named .pt": (lambda d: _onnx_model(d / "model.pt"),
                               ("this is an ONNX file: use it with nasctl bench",)),
    "garbage named .pt": (lambda d: _junk(d / "junk.pt"), ("not a readable checkpoint",)),
}


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_checkpoint_that_does_not_fit_is_named(case: str, tmp_path: Path) -> None:
    make, needles = CHECKPOINTS[case]
    path = make(tmp_path)
    assert_refused(nasctl("export", str(path), "--out", str(tmp_path / "out")), str(path),
                   *needles)
    assert not (tmp_path / "out").exists()
