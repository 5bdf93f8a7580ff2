"""Official DARTS / FairDARTS checkpoint layouts in and out (`nasctl weights`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import assert_refused, nasctl

from nasctl.errors import CheckpointError
from nasctl.genotypes import load_genotype
from nasctl.nets import build_network
from nasctl.nets.official import export_weights, import_weights, nasctl_to_fairdarts
from nasctl.nets.ops import make_op
from nasctl.train.checkpoint import model_from_checkpoint

torch.set_num_threads(1)
SMALL = {"dataset": "cifar10", "C": 4, "layers": 3}


def _trained_like(name: str) -> torch.nn.Module:
    """A tiny network with every weight and BN statistic away from its init."""
    torch.manual_seed(0)
    net = build_network(load_genotype(name), **SMALL)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in key else
                        torch.randn_like(t) * 0.3)
    return net.eval()


def _official_fairdarts_keys(name: str, net: torch.nn.Module) -> set[str]:
    """FairDARTS's DCOCell keys, written out from the genotype's official 3-tuples without
    the official code: cells.{i}._ops.{to}.{from}.{k}.<the op's own parameter names> for the
    k-th op on edge from -> to, in tuple order; every other key as the network has it."""
    genotype = load_genotype(name).to_fairdarts()
    layers = SMALL["layers"]
    keys = {k for k in net.state_dict() if not re.match(r"^cells\.\d+\._ops\.", k)}
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        seen: dict[tuple[int, int], int] = {}
        for op, to, src in genotype.reduce if reduction else genotype.normal:
            k = seen.get((to, src), 0)
            seen[(to, src)] = k + 1
            module = make_op(op, 4, 2 if reduction and src < 2 else 1)
            keys |= {f"cells.{i}._ops.{to}.{src}.{k}.{p}" for p in module.state_dict()}
    return keys


@pytest.mark.parametrize(("name", "layout"), [("DARTS_V2", "darts"),
                                              ("FairDARTS_a", "fairdarts")])
def test_import_export_round_trip_with_equal_outputs(name: str, layout: str,
                                                     tmp_path: Path) -> None:
    net = _trained_like(name)
    state = net.state_dict()
    official = state if layout == "darts" else {"state_dict": nasctl_to_fairdarts(state, net)}
    if layout == "fairdarts":
        assert set(official["state_dict"]) == _official_fairdarts_keys(name, net)
    torch.save(official, tmp_path / "official.pt")
    ckpt = import_weights(tmp_path / "official.pt", name)
    assert ckpt["imported"]["layout"] == layout
    assert {k: ckpt["network"][k] for k in SMALL} == SMALL
    got = model_from_checkpoint(ckpt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(got(x), net(x), rtol=0, atol=0)
    back = export_weights(ckpt, layout)
    inner = back if layout == "darts" else back["state_dict"]
    ref = official if layout == "darts" else official["state_dict"]
    assert set(inner) == set(ref)
    assert all(torch.equal(inner[k], ref[k]) for k in ref)


def test_wrong_genotype_and_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    net = _trained_like("FairDARTS_a")
    torch.save({"state_dict": nasctl_to_fairdarts(net.state_dict(), net)}, tmp_path / "f.tar")
    with pytest.raises(CheckpointError, match="do not fit the genotype") as exc:
        import_weights(tmp_path / "f.tar", "DARTS_V2")
    assert "\n" not in str(exc.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        import_weights(tmp_path / "junk.pt", "DARTS_V2")
    with pytest.raises(CheckpointError, match="--layout darts, but the keys are fairdarts"):
        import_weights(tmp_path / "f.tar", "FairDARTS_a", layout="darts")
    # The official DARTS cell takes exactly two inputs per node; FairDARTS_a has 1 or 2.
    with pytest.raises(CheckpointError, match="--layout darts: .* 2 per node"):
        export_weights(import_weights(tmp_path / "f.tar", "FairDARTS_a"), "darts")


def test_cli_import_then_onnx_export_gives_the_source_logits(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    net = _trained_like("FairDARTS_a")
    torch.save({"state_dict": nasctl_to_fairdarts(net.state_dict(), net)}, tmp_path / "f.tar")
    proc = nasctl("weights", "import", str(tmp_path / "f.tar"), "--genotype", "FairDARTS_a",
                  "--out", str(tmp_path / "w.pt"))
    assert proc.returncode == 0, proc.stderr
    proc = nasctl("export", str(tmp_path / "w.pt"), "--onnx", "--out", str(tmp_path / "e"),
                  "--exporter", "torchscript", "--runtimes", "ort", "--samples", "8",
                  "--parity-data", "digits")
    assert proc.returncode in (0, 1), proc.stderr
    onnx_path = tmp_path / "e" / "model.onnx"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 32, 32)
    logits = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, net(x).numpy(), rtol=1e-4, atol=1e-4)
    proc = nasctl("weights", "export", str(tmp_path / "w.pt"), "--layout", "fairdarts",
                  "--out", str(tmp_path / "back.tar"))
    assert proc.returncode == 0, proc.stderr
    back = torch.load(tmp_path / "back.tar", weights_only=True)["state_dict"]
    assert set(back) == _official_fairdarts_keys("FairDARTS_a", net)
    # The DARTS cell takes exactly two inputs per node: FairDARTS_a does not fit it.
    assert_refused(nasctl("weights", "export", str(tmp_path / "w.pt"), "--layout", "darts",
                          "--out", str(tmp_path / "d.pt")), "--layout darts", "2 per node")
    assert not (tmp_path / "d.pt").exists()
    assert_refused(nasctl("weights", "import", str(tmp_path / "f.tar"), "--genotype",
                          "DARTS_V2", "--out", str(tmp_path / "x.pt")), "do not fit")
