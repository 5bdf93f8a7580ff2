"""Issue 7's path through the CLI: an mbconv-space search writes a chain genotype that
validate, train and export accept."""

from __future__ import annotations

import json
from pathlib import Path

from cli import nasctl


def test_mbconv_search_then_validate_train_export(tmp_path: Path) -> None:
    search = nasctl("search", "--space", "mbconv", "--dataset", "digits", "--width-mult",
                     "0.25", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16",
                     "--macs-target", "386", "--out", str(tmp_path / "s"), "--json")
    assert search.returncode == 0, search.stderr[-2000:]
    summary = json.loads(search.stdout)
    (macs,) = [c for c in summary["costs"] if c["cost"] == "macs"]
    assert summary["space"] == "mbconv" and macs["predicted"] > 0 and macs["target"] == 386e6
    genotype = tmp_path / "s" / "genotype.json"

    validate = nasctl("validate", str(genotype), "--dataset", "imagenet", "--json")
    assert validate.returncode == 0, validate.stderr
    (row,) = json.loads(validate.stdout)
    assert row["macs"] == macs["predicted"]  # the search's report and the counter agree

    train = nasctl("train", str(genotype), "--recipe", "digits", "--epochs", "1",
                    "--steps-per-epoch", "2", "--eval-batches", "1", "--out",
                    str(tmp_path / "t"), "--json")
    assert train.returncode == 0, train.stderr[-2000:]

    export = nasctl("export", str(tmp_path / "t" / "best.pt"), "--onnx", "--out",
                     str(tmp_path / "e"), "--runtimes", "torch,ort", "--json")
    assert export.returncode == 0, export.stderr[-2000:]
    report = json.loads(export.stdout)
    assert report["passed"]
    assert all(c["status"] == "pass" for c in report["validation"]["agreement"])


def test_unknown_space_is_refused() -> None:
    proc = nasctl("search", "--space", "hexagon", "--out", "/tmp/never")
    assert proc.returncode == 2 and "space must be one of cell, mbconv" in proc.stderr
