"""The search supernet: the fast path computes the same function as the naive one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from nasctl.genotypes.spaces import DARTS_OPS, FAIRDARTS_OPS
from nasctl.search.plan import BN_RECOMPUTE_LEVELS
from nasctl.search.supernet import SearchNetwork, edge_list


def _outputs(net: SearchNetwork, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    logits = net(x)
    F.cross_entropy(logits, y).backward()
    return [logits.detach().clone()] + [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize(("ops", "act", "node_norm", "recompute", "channels_last"), [
    (FAIRDARTS_OPS, torch.sigmoid, "none", "off", False),
    (FAIRDARTS_OPS, torch.sigmoid, "none", "all", True),  # the CPU search's layout
    (FAIRDARTS_OPS, torch.sigmoid, "none", "convs", True),  # the CPU default
    (DARTS_OPS, lambda a: torch.softmax(a, -1), "bn", "full-res", False),
    (DARTS_OPS, lambda a: torch.softmax(a, -1), "rms", "all", False),
])
def test_fast_path_matches_naive(ops, act, node_norm, recompute, channels_last) -> None:
    torch.manual_seed(0)
    net = SearchNetwork(ops, act, channels=4, layers=3, node_norm=node_norm, alpha_init=0.5,
                        recompute=recompute)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    net.impl = "naive"
    ref = _outputs(net, x, y)
    net.impl = "fast"
    got = _outputs(net, x, y)
    assert len(ref) == len(got)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # the alphas really receive a gradient (the mixture is differentiable)
    assert net.alpha_normal.grad.abs().sum() > 0 and net.alpha_reduce.grad.abs().sum() > 0


def test_arch_and_weight_parameters_are_separate() -> None:
    net = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3, num_nodes=3)
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    assert net.alpha_normal.shape == (len(edge_list(3)), len(FAIRDARTS_OPS)) == (9, 7)
    # search BN is parameter-free and keeps no running statistics
    bns = [m for m in net.cells.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.weight is None and m.running_mean is None for m in bns)


def test_copies_follow_their_own_weights() -> None:
    """An EMA/SWA copy or DARTS's ``model.new()`` port: ``copy.deepcopy`` and a state_dict
    round trip give networks whose fast path runs their own modules, not the original's."""
    import copy
    import pickle

    torch.manual_seed(0)
    net = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3, alpha_init=0.5)
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,))
    before = _outputs(net, x, y)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.weight_parameters():
            p.mul_(-1.5).add_(0.1)
    after = _outputs(net, x, y)  # the original is untouched by changes to its copy
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    fast = _outputs(twin, x, y)
    twin.impl = "naive"
    naive = _outputs(twin, x, y)
    for a, b in zip(naive, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast[0], before[0])
    # every gradient of the copy lands on the copy's parameters, none on the original's
    assert all(p.grad is not None for p in twin.weight_parameters())
    net.zero_grad(set_to_none=True)
    twin.impl = "fast"
    F.cross_entropy(twin(x), y).backward()
    assert all(p.grad is None for p in net.parameters())

    fresh = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3)
    fresh.load_state_dict(twin.state_dict())
    for a, b in zip(fast, _outputs(fresh, x, y), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    unpickled = pickle.loads(pickle.dumps(twin))
    for a, b in zip(fast, _outputs(unpickled, x, y), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_recomputed_batch_norm_inputs_change_nothing(channels_last: bool) -> None:
    """Every level of BN-input recomputation gives the values and gradients of keeping
    them (bit for bit: the same kernels on the same inputs), and the naive path's within
    the parity tolerance."""
    torch.manual_seed(0)
    net = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3, alpha_init=0.5)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    net.impl = "naive"
    naive = _outputs(net, x, y)
    net.impl = "fast"
    results = {}
    for level in BN_RECOMPUTE_LEVELS:
        for cell in net.cells:
            cell.bn_recompute = level
        results[level] = _outputs(net, x, y)
    for level in BN_RECOMPUTE_LEVELS:
        for a, b in zip(results["none"], results[level], strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        for a, b in zip(naive, results[level], strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_recomputation_keeps_less_for_backward() -> None:
    """The point of recomputing BN inputs: each level keeps fewer bytes for backward."""
    torch.manual_seed(0)
    net = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3)
    x = torch.randn(2, 3, 16, 16)

    def kept_bytes(level: str) -> int:
        for cell in net.cells:
            cell.bn_recompute = level
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(x)  # held: a freed graph's addresses would be reused
        assert out.grad_fn is not None
        return sum(seen.values())

    none, producer, chain = (kept_bytes(level) for level in BN_RECOMPUTE_LEVELS)
    assert chain < 0.7 * producer and producer < 0.8 * none


def test_recomputation_repeats_the_forward_autocast() -> None:
    """Under autocast (backward outside it, as a training step runs it) the recomputed
    stages run at the forward's precision, so the gradients still equal those of keeping
    the BN inputs."""
    torch.manual_seed(0)
    net = SearchNetwork(FAIRDARTS_OPS, torch.sigmoid, channels=4, layers=3, alpha_init=0.5)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    results = {}
    for level in ("none", "chain"):
        for cell in net.cells:
            cell.bn_recompute = level
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        results[level] = torch.autograd.grad(loss, list(net.parameters()))
    for a, b in zip(results["none"], results["chain"], strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
