"""Final networks: exactly what the official implementations build, and trainable."""

from __future__ import annotations

import pytest
import torch

from nasctl.genotypes import load_genotype, paper_card, zoo_names
from nasctl.nets import build_network
from nasctl.nets.counting import count_macs, count_params

SETTINGS = [("cifar10", False, "cifar_params"), ("cifar10", True, "cifar_params_with_aux"),
            ("imagenet", False, "imagenet_params")]


def _meta_net(name: str, dataset: str, auxiliary: bool):
    with torch.device("meta"):  # shapes only: fast
        return build_network(name, dataset=dataset, auxiliary=auxiliary)


@pytest.mark.parametrize("name", zoo_names())
def test_parameter_counts_equal_the_official_implementation(name: str) -> None:
    official = paper_card(name).official_counts
    checked = 0
    for dataset, aux, key in SETTINGS:
        if key in official:
            assert count_params(_meta_net(name, dataset, aux)).total == official[key], key
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("name", zoo_names())
def test_macs_equal_the_official_implementation(name: str) -> None:
    official = paper_card(name).official_counts
    assert count_macs(_meta_net(name, "cifar10", True), 32).convfc == official["cifar_macs_convfc"]
    if "imagenet_macs_convfc" in official:
        macs = count_macs(_meta_net(name, "imagenet", False), 224)
        assert macs.convfc == official["imagenet_macs_convfc"]


def test_fairdarts_a_counts() -> None:
    net = _meta_net("FairDARTS_a", "cifar10", True)
    params = count_params(net)
    assert (params.without_aux, params.total) == (2_360_782, 2_837_208)
    macs = count_macs(net, 32)
    assert macs.convfc == 371_455_200
    assert sum(macs.by_op.values()) == sum(macs.by_kind.values())
    assert macs.by_op["sep_conv_3x3"] > macs.by_op["max_pool_3x3"] > 0


@pytest.mark.parametrize(("name", "published_m"), [("PC_DARTS_cifar", 586.4), ("PDARTS", 557.4)])
def test_all_convention_reproduces_published_imagenet_macs(name: str, published_m: float) -> None:
    macs = count_macs(_meta_net(name, "imagenet", False), 224)
    assert round(macs.all / 1e6, 1) == published_m


def test_counting_a_real_network_leaves_it_untouched() -> None:
    net = build_network("DARTS_V2", C=4, layers=3, auxiliary=True).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, 32)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_tiny_network_trains_and_switches_outputs() -> None:
    torch.manual_seed(0)
    net = build_network("FairDARTS_a", C=4, layers=3, auxiliary=True, drop_path=0.2,
                        num_classes=10)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (4, 10)
    ce = torch.nn.functional.cross_entropy
    loss = ce(logits, y) + 0.4 * ce(aux, y)
    loss.backward()
    assert all(p.grad is not None for n, p in net.named_parameters() if "auxiliary" not in n)
    net.eval()
    with torch.no_grad():
        out1, out2 = net(x), net(x)
    assert isinstance(out1, torch.Tensor) and torch.equal(out1, out2)  # no drop-path in eval


def test_state_dict_names_follow_the_official_code() -> None:
    keys = build_network("DARTS_V2", C=4, layers=3).state_dict().keys()
    assert "cells.0._ops.0.op.1.weight" in keys  # SepConv: op.1 is the first depthwise conv
    assert "cells.2.preprocess0.conv_1.weight" in keys  # FactorizedReduce after a reduction
    assert "auxiliary_head.features.2.weight" in keys and "classifier.weight" in keys


def test_imagenet_stem_runs_at_any_resolution() -> None:
    net = build_network("PDARTS", dataset="imagenet", C=8, layers=3, num_classes=5).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_dead_node_shrinks_the_cell_output() -> None:
    net = build_network(load_genotype("FairDARTS_a"), C=4, layers=3)
    # 3 cells: normal (3 live nodes), then reductions at 3//3 and 2*3//3 (4 live nodes)
    assert [cell.multiplier for cell in net.cells] == [3, 4, 4]


def test_cells_whose_output_nobody_reads_are_not_computed() -> None:
    from nasctl.genotypes import from_fairdarts

    # normal cells read only node 0 (cell k-2), so with reductions at cells 1 and 3 the
    # reduction cells feed nothing the classifier sees
    g = from_fairdarts({"normal": [("sep_conv_3x3", 2, 0), ("skip_connect", 3, 0)],
                        "reduce": [("sep_conv_3x3", 2, 0), ("max_pool_3x3", 3, 1)]})
    torch.manual_seed(0)
    net = build_network(g, dataset="digits", C=4, layers=5, auxiliary=True).eval()
    assert sorted(net._live_eval) == [0, 2, 4]
    assert sorted(net._live_train) == [0, 1, 2, 3, 4]  # the aux head reads cell 3
    live_macs = count_macs(net, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        skipped = net(x)
        net._live_eval = frozenset(range(5))
        everything = net(x)
    assert torch.equal(skipped, everything)  # same function, less work
    all_macs = count_macs(net, 32)
    assert live_macs.convfc < all_macs.convfc
    assert live_macs.params_used < all_macs.params_used
