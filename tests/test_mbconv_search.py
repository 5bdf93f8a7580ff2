"""The mbconv supernet: mixture forward, FairDARTS zero-one loss, the differentiable MAC
budget, discretization by the strongest choice, and a two-step search on digits whose
chain genotype the rest of nasctl accepts."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.genotypes import read_genotype
from nasctl.nets import build_network
from nasctl.nets.chain_units import ChainDeployment
from nasctl.nets.counting import count_macs
from nasctl.nets.mbconv import ChainLayout, chain_macs
from nasctl.search.cost import BoundCost
from nasctl.search.macs import MacCost, MacOptions
from nasctl.search.mbconv import MBConvSpace, MBConvSupernet
from nasctl.search.methods import get_method

# 5 searchable layers: 8->8 s2, 8->8, 8->16 s2, 16->16, 16->24 (skip allowed at 1 and 3)
TINY = ChainLayout(stem=8, first=8, stages=((8, 2, 2), (16, 2, 2), (24, 1, 1)), head=32)


def _net(activation=torch.sigmoid) -> MBConvSupernet:
    torch.manual_seed(0)
    return MBConvSupernet(TINY, activation, num_classes=10)


def test_candidates_and_forward() -> None:
    net = _net()
    assert [len(layer.op_names) for layer in net.layers] == [6, 7, 6, 7, 6]
    assert net.layers[1].op_names[-1] == "skip"
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    arch = {id(p) for p in net.arch_parameters()}
    assert not arch & {id(p) for p in net.weight_parameters()}


def _macs(target: float | None = None, resolution: int = 64) -> BoundCost:
    """The MAC cost of the TINY chain's final network at ``resolution``, 10 classes."""
    cost = MacCost(MacOptions(mac_target=target))
    return cost.bind(ChainDeployment(TINY, resolution, 10))


def test_expected_macs_is_exact_for_one_hot_weights() -> None:
    net = _net(activation=lambda a: a)  # weights = alphas, so one-hot alphas pick a layer
    with torch.no_grad():
        for alpha, pick in zip(net.alphas, [1, 6, 5, 2, 3], strict=True):
            alpha.zero_()
            alpha[pick] = 1.0
    g = net.discretize()
    assert g.cells["chain"].nodes[2]["op"] == "skip"  # chain node = searchable layer + 1
    bound = _macs()
    expected = bound.expected(MBConvSpace().groups(net)).item()
    assert expected == chain_macs(g.cells["chain"], 64, 10) == bound.predict(g)
    counted = count_macs(build_network(g, dataset="digits"), 64).convfc
    assert counted == chain_macs(g.cells["chain"], 64, 10)


def test_mac_penalty_pulls_expected_macs_towards_the_target() -> None:
    net = _net()
    groups = MBConvSpace().groups
    start = _macs().expected(groups(net)).item()
    bound = _macs(target=0.5 * start / 1e6)
    opt = torch.optim.Adam(net.arch_parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        bound.penalty(groups(net)).backward()
        opt.step()
    assert bound.expected(groups(net)).item() < 0.95 * start
    # cheaper choices won: expansion 3 and skips rather than expansion 6
    assert all(op.endswith("_e3") or op == "skip" for op in net.strongest_ops())


def test_fairdarts_zero_one_loss_pushes_weights_away_from_half() -> None:
    net = _net()
    method = get_method("fairdarts")
    with torch.no_grad():
        for alpha in net.alphas:
            alpha.normal_(0, 0.1)
    before = torch.cat([w.flatten() for w in net.arch_weights()])
    reg = method.regularizer(net)  # type: ignore[arg-type]
    assert reg is not None
    reg.backward()
    with torch.no_grad():
        for alpha in net.alphas:
            alpha -= 10.0 * alpha.grad
    after = torch.cat([w.flatten() for w in net.arch_weights()])
    assert ((after - 0.5).abs() > (before - 0.5).abs()).all()


def test_discretization_keeps_the_strongest_choice_and_skip_where_it_wins() -> None:
    net = _net()
    with torch.no_grad():
        net.alphas[0][4] = 2.0  # mbconv_k7_e3
        net.alphas[3][-1] = 2.0  # skip
    g = net.discretize(name="picked")
    layers = [g.cells["chain"].nodes[n]["op"] for n in sorted(g.cells["chain"].nodes)]
    assert layers[0] == "mbconv_k3_e1"  # the fixed first layer
    assert layers[1] == "mbconv_k7_e3" and layers[4] == "skip"
    assert layers[2] == "mbconv_k3_e3"  # all equal: the first candidate


def test_the_shared_loop_searches_the_chain(tmp_path: Path) -> None:
    from nasctl.runs import EpochDone, RunDone, RunStarted, RunWarning, StepDone
    from nasctl.search import make_search_config, run_search

    cfg = make_search_config(space="mbconv", width_mult=0.25, epochs=1, batch_size=8,
                             steps_per_epoch=2, mac_target=20.0, deploy_resolution=32,
                             deploy_classes=10, device="cpu", w01=5.0)
    events: list[object] = []
    result = run_search(cfg, tmp_path / "run", on_event=events.append)
    kinds = [type(e) for e in events if not isinstance(e, RunWarning)]
    assert kinds == [RunStarted, StepDone, EpochDone, RunDone]
    step, epoch = (e for e in events if isinstance(e, StepDone | EpochDone))
    assert {"weight_loss", "arch_loss"} <= set(step.values) and "arch_acc" in epoch.metrics
    genotype = read_genotype(tmp_path / "run" / "genotype.json")
    assert genotype.search_space == "mbconv-chain"
    assert (tmp_path / "run" / "arch_weights.png").stat().st_size > 10_000  # per-layer plot
    assert (tmp_path / "run" / "costs.png").exists()  # the MAC target against the records
    assert genotype.provenance["method"] == "fairdarts"
    rule = genotype.provenance["discretization"]
    assert rule["threshold"] == 0.85 and rule["w01"] == 5.0  # the method's rule and options
    assert "reaching the threshold" in rule["rule"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (macs,) = [c for c in report["costs"] if c["cost"] == "macs"]
    assert macs["target"] == 20e6 and macs["meets_target"] == (macs["predicted"] <= 22e6)
    assert macs["predicted"] == result.costs[0].predicted == chain_macs(genotype.cells["chain"],
                                                                        32, 10)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["method_options"]["w01"] == 5.0 and config["space"] == "mbconv"
    assert config["space_options"]["deploy_resolution"] == 32
    net = build_network(genotype, dataset="digits")
    assert count_macs(net, 32).convfc == macs["predicted"]
    out = CliRunner().invoke(app, ["validate", str(tmp_path / "run" / "genotype.json"),
                                   "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["macs"] == macs["predicted"]


def test_fairdarts_chain_rule_keeps_the_strongest_candidate_at_the_threshold() -> None:
    method = get_method("fairdarts", threshold=0.8)
    net = _net()
    with torch.no_grad():
        for alpha in net.alphas:
            alpha.fill_(-3.0)  # sigmoid 0.05: below the threshold everywhere
        net.alphas[0][2] = 3.0  # sigmoid 0.95: mbconv_k5_e3 reaches it
        net.alphas[0][4] = 2.0  # 0.88: reaches it too, but weaker
    choice = method.discretizer("mbconv")(net, None)
    assert choice.ops[0] == net.choices[0][2]
    assert choice.fallback_layers == [1, 2, 3, 4]  # nothing reached it there
    assert "4 of 5 layers" in choice.notes[0]
