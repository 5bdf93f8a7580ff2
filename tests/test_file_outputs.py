"""Commands that write one file (genotypes convert/import/draw, weights export/import)
refuse an --out that is a folder, one of their inputs, in a folder that does not exist,
or (convert) of a suffix that names no format; every format nasctl writes reads back;
a nasctl checkpoint's own network settings survive `weights export` then `import`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli import assert_refused, in_process

from nasctl.genotypes import load_genotype
from nasctl.genotypes.io import genotype_to_dict
from nasctl.nets import build_network


@pytest.mark.parametrize(("args", "needle"), [
    (["genotypes", "convert", "DARTS_V2", "-o", "{tmp}/a.yaml"],
     "cannot tell the format from '.yaml'"),
    (["genotypes", "convert", "DARTS_V2", "-o", "{tmp}/typo/a.json"],
     "the folder {tmp}/typo does not exist"),
    (["genotypes", "convert", "DARTS_V2", "-o", "{tmp}"], "is a folder"),
    (["genotypes", "convert", "{tmp}/g.json", "-o", "{tmp}/g.json"], "is the input"),
    (["genotypes", "import", "{tmp}/g.json", "-o", "{tmp}/g.json"], "is the input"),
    (["genotypes", "draw", "DARTS_V2", "-o", "{tmp}/nowhere/c.png"], "does not exist"),
    (["weights", "export", "{tmp}/ck.pt", "--layout", "darts", "-o", "{tmp}/ck.pt"],
     "is the input"),
    (["weights", "import", "{tmp}/ck.pt", "-g", "DARTS_V2", "-o", "{tmp}/ck.pt"],
     "is the input"),
], ids=["yaml", "missing-folder", "folder", "convert-onto-input", "import-onto-input",
        "draw-missing-folder", "weights-export-onto-input", "weights-import-onto-input"])
def test_an_out_file_that_would_lose_something_is_refused(
        tmp_path: Path, args: list[str], needle: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "g.json").write_bytes(b"")
    in_process(capsys, "genotypes", "convert", "DARTS_V2", "-o", str(tmp_path / "g.json"))
    (tmp_path / "ck.pt").write_bytes(b"precious")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert_refused(in_process(capsys, *argv), needle.replace("{tmp}", str(tmp_path)))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_graphml_and_bom_files_read_back(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("DARTS_V2", "FairDARTS_a"):
        graphml = tmp_path / f"{name}.graphml"
        assert in_process(capsys, "genotypes", "convert", name, "-o", str(graphml)
                          ).returncode == 0
        back = in_process(capsys, "genotypes", "show", str(graphml), "-f", "fairdarts")
        assert back.returncode == 0, back.stderr
        assert back.stdout == in_process(capsys, "genotypes", "show", name, "-f",
                                         "fairdarts").stdout
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + _json(tmp_path, capsys))
    assert in_process(capsys, "genotypes", "show", str(bom)).returncode == 0
    (tmp_path / "notes.txt").write_text("hello\n")
    assert_refused(in_process(capsys, "genotypes", "show", str(tmp_path / "notes.txt")),
                   "notes.txt: not a genotype file: expected nasctl or NNI JSON, GraphML")


def _json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> bytes:
    in_process(capsys, "genotypes", "convert", "DARTS_V2", "-o", str(tmp_path / "d.json"))
    return (tmp_path / "d.json").read_bytes()


def test_weights_export_then_import_keeps_a_nasctl_checkpoints_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    network = {"dataset": "digits", "C": 4, "layers": 3, "num_classes": 10,
               "auxiliary": False, "drop_path_on": "node"}
    net = build_network(load_genotype("FairDARTS_a"), **network)
    torch.save({"format": "nasctl-checkpoint", "version": 1, "kind": "train",
                "model": net.state_dict(), "genotype": genotype_to_dict(load_genotype(
                    "FairDARTS_a")), "network": network}, tmp_path / "ck.pt")
    official = tmp_path / "w.fairdarts.pt"
    proc = in_process(capsys, "weights", "export", str(tmp_path / "ck.pt"), "--layout",
                      "fairdarts", "-o", str(official))
    assert proc.returncode == 0, proc.stderr
    proc = in_process(capsys, "weights", "import", str(official), "-g", "FairDARTS_a",
                      "-o", str(tmp_path / "back.pt"), "--json")
    assert proc.returncode == 0, proc.stderr
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back["network"] == network  # digits and drop-path per node, not cifar10/edge
    assert_refused(in_process(capsys, "weights", "import", str(tmp_path / "w.fairdarts.pt"),
                              "-g", "FairDARTS_a", "--dataset", "cifar10", "-o",
                              str(tmp_path / "b2.pt")), "trained on digits, not cifar10")
