"""The final network of a chain genotype: ProxylessNAS-Mobile's published counts, the
analytic MAC formula the search penalty uses, and a tiny network that trains."""

from __future__ import annotations

import pytest
import torch

from nasctl.nets import build_network
from nasctl.nets.counting import count_macs, count_params
from nasctl.nets.mbconv import (
    PROXYLESS_S2,
    ChainLayout,
    MBConvBlock,
    chain_genotype,
    mbconv_macs,
    scaled,
)

# ProxylessNAS-Mobile as released by its authors (mit-han-lab/proxylessnas, the
# proxyless_mobile.config their model zoo downloads): the search layout but with 32
# channels in the first searched stage; two "ZeroLayer" blocks, which are skips here.
PROXYLESS_MOBILE_LAYOUT = ChainLayout(
    stem=32, first=16,
    stages=((32, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)),
    head=1280,
)
PROXYLESS_MOBILE_OPS = [
    "mbconv_k5_e3", "mbconv_k3_e3", "skip", "skip",
    "mbconv_k7_e3", "mbconv_k3_e3", "mbconv_k5_e3", "mbconv_k5_e3",
    "mbconv_k7_e6", "mbconv_k5_e3", "mbconv_k5_e3", "mbconv_k5_e3",
    "mbconv_k5_e6", "mbconv_k5_e3", "mbconv_k5_e3", "mbconv_k5_e3",
    "mbconv_k7_e6", "mbconv_k7_e6", "mbconv_k7_e3", "mbconv_k7_e3",
    "mbconv_k7_e6",
]


def test_proxylessnas_mobile_matches_its_published_counts() -> None:
    """Published: 4.1M params, 320M MACs (conv+FC, 224x224)."""
    g = chain_genotype(PROXYLESS_MOBILE_LAYOUT, PROXYLESS_MOBILE_OPS, name="ProxylessNAS_Mobile")
    with torch.device("meta"):
        net = build_network(g, dataset="imagenet")
    params = count_params(net)
    macs = count_macs(net, 224)
    assert round(params.total / 1e6, 1) == 4.1
    assert round(macs.convfc / 1e6) == 320
    # The integers of the authors' network (its config has no width rounding to hide in).
    assert params.total == 4_080_512


def test_analytic_macs_equal_the_counter() -> None:
    """The search's MAC penalty uses mbconv_macs; it must agree with real counting."""
    for kernel, expansion, stride, c_in, c_out in [(3, 1, 1, 8, 8), (5, 3, 2, 8, 16),
                                                    (7, 6, 1, 16, 16), (3, 6, 2, 12, 24)]:
        block = MBConvBlock(f"mbconv_k{kernel}_e{expansion}", c_in, c_out, stride, kernel,
                            expansion)
        counted = count_macs(block, (9, 10), channels=c_in).convfc
        assert counted == mbconv_macs(c_in, c_out, kernel, expansion, stride, 9, 10)


def _tiny(ops: list[str] | None = None):
    layout = scaled(PROXYLESS_S2, 0.25, divisor=1)
    ops = ops or ["mbconv_k3_e3", "mbconv_k5_e6", "skip", "mbconv_k7_e3"] + ["skip"] * 17
    ops = [op if op != "skip" or i in _skippable(layout) else "mbconv_k3_e3"
           for i, op in enumerate(ops)]
    return chain_genotype(layout, ops, name="tiny")


def _skippable(layout: ChainLayout) -> set[int]:
    from nasctl.nets.mbconv import searchable_slots

    return {i for i, s in enumerate(searchable_slots(layout)) if s.allows_skip}


def test_tiny_network_shapes_shortcuts_and_a_training_step() -> None:
    torch.manual_seed(0)
    g = _tiny()
    net = build_network(g, dataset="digits", C=36, layers=20, auxiliary=True,
                        drop_path_on="edge")  # DARTS-only settings are ignored for a chain
    assert len(net.blocks) == 22
    assert [b.has_shortcut for b in net.blocks][:4] == [False, False, True, True]
    assert net.blocks[3].mobile_inverted_conv is None  # skip: the shortcut alone
    x = torch.randn(4, 3, 32, 32)
    net.eval()
    assert net(x).shape == (4, 10)
    net.train()
    net.drop_path_prob = 0.2
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    names = {k for k in net.state_dict() if "num_batches" not in k}
    # the ProxylessNAS authors' module names
    assert "first_conv.conv.weight" in names and "classifier.linear.weight" in names
    assert "blocks.1.mobile_inverted_conv.inverted_bottleneck.conv.weight" in names
    assert "blocks.0.mobile_inverted_conv.depth_conv.bn.weight" in names


@pytest.mark.parametrize("width_mult", [0.5, 1.4])
def test_width_multiplier_rounds_to_multiples_of_8(width_mult: float) -> None:
    layout = scaled(PROXYLESS_S2, width_mult)
    widths = [layout.stem, layout.first] + [c for c, _n, _s in layout.stages]
    assert all(c % 8 == 0 for c in widths)
    assert layout.head == (1792 if width_mult > 1 else 1280)
