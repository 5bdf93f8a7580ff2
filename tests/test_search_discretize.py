"""Discretisers: FairDARTS sparse/edge thresholds, the DARTS rule, iDARTS decorrelation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import assert_refused, nasctl
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.errors import NasctlError
from nasctl.genotypes import read_genotype
from nasctl.genotypes.spaces import DARTS_OPS, FAIRDARTS_OPS
from nasctl.nets import build_network
from nasctl.search import get_method
from nasctl.search.discretize import (
    build_genotype,
    choose_with_fallback,
    edge_threshold,
    sparse_threshold,
    top_edges,
)
from nasctl.search.idarts import IDarts, decorrelation_scores
from nasctl.search.supernet import SearchNetwork

OPS = list(FAIRDARTS_OPS)


def _weights(entries: dict[tuple[int, str], float], fill: float = 0.1) -> np.ndarray:
    w = np.full((14, len(OPS)), fill)
    for (edge, op), value in entries.items():
        w[edge, OPS.index(op)] = value
    return w


def test_sparse_keeps_top2_edges_above_threshold_only() -> None:
    # node 2: edges 0,1; node 3: edges 2,3,4; node 4: 5..8; node 5: 9..13
    w = _weights({(0, "sep_conv_3x3"): 0.95, (1, "skip_connect"): 0.5,
                  (3, "dil_conv_3x3"): 0.9, (4, "max_pool_3x3"): 0.88, (2, "sep_conv_5x5"): 0.86,
                  (12, "avg_pool_3x3"): 0.99})
    edges = sparse_threshold(w, OPS, 4, threshold=0.85)
    assert edges == [("sep_conv_3x3", 0, 2),  # node 2 keeps 1 of its top 2
                     ("dil_conv_3x3", 1, 3), ("max_pool_3x3", 2, 3),  # 0.86 is 3rd: dropped
                     ("avg_pool_3x3", 3, 5)]  # node 4 has none: dead
    g = build_genotype(choose_with_fallback(edges, w, OPS, 4),
                       choose_with_fallback(edges, w, OPS, 4), 4)
    assert g.normal.graph["concat"] == [2, 3, 5]  # node 4 pruned
    assert g.normal.edges[0, 2, 0]["weight"] == pytest.approx(0.95)
    build_network(g, dataset="digits", C=4, layers=3)


def test_edge_mode_keeps_the_top2_ops_of_each_edge_above_threshold() -> None:
    # The official FairDARTS `edge` rule: on every edge sort the op weights in ascending
    # order (a stable sort), take the last two, keep each of them that reaches the
    # threshold, in that order. Expected output worked out by hand from that rule for this
    # matrix (ops: max, avg, skip, sep3, sep5, dil3, dil5).
    w = _weights({
        (0, "sep_conv_3x3"): 0.90, (0, "skip_connect"): 0.87, (0, "dil_conv_5x5"): 0.86,
        (1, "max_pool_3x3"): 0.99, (1, "avg_pool_3x3"): 0.98, (1, "sep_conv_5x5"): 0.97,
        (1, "dil_conv_3x3"): 0.96,  # 4 ops above 0.85: only the top 2 survive
        (2, "dil_conv_3x3"): 0.95, (2, "sep_conv_5x5"): 0.84,  # 2nd below threshold
        (4, "skip_connect"): 0.80,  # best op below threshold: edge dropped
        (7, "avg_pool_3x3"): 0.85,  # exactly the threshold: kept
        (13, "sep_conv_3x3"): 0.91, (13, "dil_conv_5x5"): 0.91, (13, "max_pool_3x3"): 0.91,
    })
    edges = edge_threshold(w, OPS, 4, 0.85)
    assert edges == [
        ("skip_connect", 0, 2), ("sep_conv_3x3", 0, 2),  # dil_conv_5x5 0.86 is 3rd
        ("avg_pool_3x3", 1, 2), ("max_pool_3x3", 1, 2),  # weakest first
        ("dil_conv_3x3", 0, 3),
        ("avg_pool_3x3", 2, 4),
        ("sep_conv_3x3", 4, 5), ("dil_conv_5x5", 4, 5),  # a 3-way tie: the later ops win
    ]
    # The keep-everything-above-threshold reading would give 12 ops here.
    assert len([v for v in w.flatten() if v >= 0.85]) == 12
    assert len(edge_threshold(w, OPS, 4, 0.85, k=1)) == 5
    assert len(edge_threshold(w, OPS, 4, 0.85, k=7)) == 12
    choice = choose_with_fallback(edges, w, OPS, 4)
    g = build_genotype(choice, choice, 4)
    assert g.normal.number_of_edges(0, 2) == 2 and g.normal.number_of_edges(1, 2) == 2
    assert g.normal.graph["concat"] == [2, 3, 4, 5]
    build_network(g, dataset="digits", C=4, layers=3)


def test_fairdarts_edge_k_is_an_option() -> None:
    assert get_method("fairdarts", discretization="edge").options()["edge_k"] == 2
    assert get_method("fairdarts", discretization="edge", edge_k=3).config.edge_k == 3
    with pytest.raises(NasctlError, match="edge_k must be >= 1"):
        get_method("fairdarts", discretization="edge", edge_k=0)


def test_empty_cell_falls_back_to_strongest_op_per_node() -> None:
    w = _weights({(1, "sep_conv_3x3"): 0.6, (3, "avg_pool_3x3"): 0.7})
    assert sparse_threshold(w, OPS, 4, 0.85) == []
    choice = choose_with_fallback([], w, OPS, 4)
    assert choice.fallback
    assert ("sep_conv_3x3", 1, 2) in choice.edges and ("avg_pool_3x3", 1, 3) in choice.edges
    assert len(choice.edges) == 4  # one input per node: every node live
    g = build_genotype(choice, choice, 4)
    assert g.normal.graph["concat"] == [2, 3, 4, 5]


def test_darts_rule_ignores_none() -> None:
    ops = list(DARTS_OPS)
    w = np.full((14, len(ops)), 0.1)
    w[:, 0] = 0.9  # 'none' strongest everywhere
    w[0, ops.index("sep_conv_3x3")] = 0.5
    w[1, ops.index("max_pool_3x3")] = 0.4
    w[3, ops.index("dil_conv_3x3")] = 0.3  # node 3: edge 3 (from 1) beats edge 2 (from 0)
    w[2, ops.index("avg_pool_3x3")] = 0.2
    edges = top_edges(w, ops, 4)
    assert edges[:4] == [("sep_conv_3x3", 0, 2), ("max_pool_3x3", 1, 2),
                         ("dil_conv_3x3", 1, 3), ("avg_pool_3x3", 0, 3)]  # strongest first
    assert all(op != "none" for op, _s, _d in edges) and len(edges) == 8


def _gram(*columns: np.ndarray) -> np.ndarray:
    v = np.stack(columns)
    return v @ v.T


def _residual_norms(ops: np.ndarray, groups: list[int]) -> np.ndarray:
    """||r_k||: op k's least-squares residual on the other ops of its group, directly."""
    norms = []
    for k in range(len(ops)):
        others = [j for j in range(len(ops)) if j != k and groups[j] == groups[k]]
        r = ops[k]
        if others:
            coef = np.linalg.lstsq(ops[others].T, ops[k], rcond=None)[0]
            r = ops[k] - ops[others].T @ coef
        norms.append(np.linalg.norm(r))
    return np.array(norms)


def test_decorrelation_and_alpha_disagree_on_correlated_ops_sharing_one_signal() -> None:
    """One edge, as the supernet builds it: node = sum_k w_k v_k. Ops A and B carry the same
    signal (0.99 correlated) and share its weight; op C is unique with a smaller weight."""
    rng = np.random.default_rng(0)
    n = 20000
    shared, unique = rng.standard_normal(n), rng.standard_normal(n)
    a = shared + 0.1 * rng.standard_normal(n)
    b = shared + 0.1 * rng.standard_normal(n)
    ops = np.stack([a, b, unique])
    w = np.array([0.42, 0.38, 0.20])  # a softmax row: alpha ranks A, B, C
    node = w @ ops
    gram = _gram(*ops, node)
    # Without decorrelation the node looks like the shared signal: the ranking is alpha's.
    plain = decorrelation_scores(gram, "none")
    assert int(np.argmax(plain)) == int(np.argmax(w)) == 0 and plain[2] < 0.25
    # lstsq: A and B explain each other, so only their small private parts count; C wins.
    lst = decorrelation_scores(gram, "lstsq")
    assert int(np.argmax(lst)) == 2 and lst[2] > 2 * max(lst[0], lst[1])
    # ... and each score is exactly w_k * ||r_k|| / ||n|| (alpha times uniqueness).
    expected = w * _residual_norms(ops, [0, 0, 0]) / np.linalg.norm(node)
    np.testing.assert_allclose(lst, expected, rtol=1e-6)
    # Inner product: <n, r_k> / ||n||^2 = w_k ||r_k||^2 / ||n||^2; C still wins.
    inner = decorrelation_scores(gram, "lstsq", similarity="inner")
    np.testing.assert_allclose(inner, w * _residual_norms(ops, [0, 0, 0]) ** 2
                               / np.linalg.norm(node) ** 2, rtol=1e-6)
    assert int(np.argmax(inner)) == 2
    # Gram-Schmidt keeps the first of the pair whole: in alpha order it inherits alpha's
    # choice, and whichever of A, B comes first wins.
    assert int(np.argmax(decorrelation_scores(gram, "gram-schmidt", [0, 1, 2]))) == 0
    assert int(np.argmax(decorrelation_scores(gram, "gram-schmidt", [1, 0, 2]))) == 1
    # Uncorrelated ops of equal norm: decorrelation changes nothing, the ranking is alpha's.
    ind = rng.standard_normal((3, n))
    ind /= np.linalg.norm(ind, axis=1, keepdims=True)
    agree = decorrelation_scores(_gram(*ind, w @ ind), "lstsq")
    assert list(np.argsort(agree)) == list(np.argsort(w))


def test_decorrelate_over_node_or_edge() -> None:
    """Two in-edges of one node: A on edge 0 and B on edge 1 read the same signal (as a
    skip and a pool of two correlated nodes can); C and D are unique, lighter ops."""
    rng = np.random.default_rng(1)
    n = 20000
    shared = rng.standard_normal(n)
    a = shared + 0.1 * rng.standard_normal(n)
    b = shared + 0.1 * rng.standard_normal(n)
    c, d = rng.standard_normal(n), rng.standard_normal(n)
    ops, edge = np.stack([a, c, b, d]), [0, 0, 1, 1]
    w = np.array([0.6, 0.4, 0.7, 0.3])  # per-edge softmax rows (A, C) and (B, D)
    node = w @ ops
    gram = _gram(*ops, node)
    # Over the node (default): A and B cancel across the edges; each edge keeps C / D.
    over_node = decorrelation_scores(gram, "lstsq")
    assert over_node[1] > over_node[0] and over_node[3] > over_node[2]
    np.testing.assert_allclose(over_node, w * _residual_norms(ops, [0, 0, 0, 0])
                               / np.linalg.norm(node), rtol=1e-6)
    # Within an edge: nothing on edge 0 explains A, so A and B win again, as alpha says.
    over_edge = decorrelation_scores(gram, "lstsq", groups=edge)
    assert over_edge[0] > over_edge[1] and over_edge[2] > over_edge[3]
    # Edge-wise residuals of A, C are A, C themselves (uncorrelated): plain cosines.
    np.testing.assert_allclose(over_edge, decorrelation_scores(gram, "none"), atol=0.02)


def test_cosine_and_inner_product_differ_when_op_norms_differ() -> None:
    """Cosine scores w_k ||r_k|| / ||n||, the inner product w_k ||r_k||^2 / ||n||^2: an op
    with a large output (an unnormalized skip) and a small weight wins only the latter."""
    rng = np.random.default_rng(2)
    n = 20000
    small = rng.standard_normal(n)
    large = 3.0 * rng.standard_normal(n)
    w = np.array([0.6, 0.1])
    gram = _gram(small, large, w @ np.stack([small, large]))
    cos = decorrelation_scores(gram, "lstsq", similarity="cosine")
    inner = decorrelation_scores(gram, "lstsq", similarity="inner")
    assert int(np.argmax(cos)) == 0 and int(np.argmax(inner)) == 1


def test_an_op_the_others_explain_scores_zero() -> None:
    rng = np.random.default_rng(3)
    a, c = rng.standard_normal(500), rng.standard_normal(500)
    gram = _gram(a, a.copy(), c, 0.5 * a + 0.5 * a + 0.2 * c)
    for similarity in ("cosine", "inner"):
        scores = decorrelation_scores(gram, "lstsq", similarity=similarity)
        assert scores[0] == scores[1] == 0.0 and scores[2] > 0
    assert np.all(decorrelation_scores(_gram(a, c, 0 * a), "none") == 0)  # a zero node
    with pytest.raises(NasctlError, match="similarity"):
        decorrelation_scores(gram, "lstsq", similarity="dot")  # type: ignore[arg-type]


def _probe_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, 16, 16, generator=g), torch.zeros(4, dtype=torch.long))
            for _ in range(2)]


def _tiny_supernet(method: IDarts, seed: int = 0) -> SearchNetwork:
    torch.manual_seed(seed)
    net = SearchNetwork(DARTS_OPS, method.activation, channels=4, layers=3,
                        node_norm=method.node_norm)
    with torch.no_grad():  # alphas away from uniform, so they rank the ops
        for a in net.arch_parameters():
            a.normal_(0, 1)
    return net


def test_idarts_discretize_on_a_real_supernet() -> None:
    method = get_method("idarts")
    assert isinstance(method, IDarts)
    net = _tiny_supernet(method)
    probe = _probe_batches()
    scores = method.op_scores(net, probe)
    assert scores[0].shape == (14, 8) and np.isneginf(scores[0][:, 0]).all()  # 'none'
    assert np.isfinite(scores[0][:, 1:]).all() and np.abs(scores[0][:, 1:]).max() <= 1 + 1e-9
    d = method.discretize(net, probe)
    assert d.settings == {"node_norm": "bn", "decorrelation": "lstsq", "gs_order": "alpha",
                          "decorrelate_over": "node", "similarity": "cosine",
                          "node_output": "pre-norm"}
    g = build_genotype(d.normal, d.reduce, 4)
    assert all(len(list(g.normal.predecessors(n))) == 2 for n in range(2, 6))
    build_network(g, dataset="digits", C=4, layers=3)


def test_probe_records_the_node_before_and_after_node_normalization() -> None:
    net = _tiny_supernet(get_method("idarts", node_norm="bn"))
    x = _probe_batches()[0][0]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    logits = net.probe(x, lambda _c, _n, _o, total, normalized: seen.append((total, normalized)))
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x))  # the probe path is the network's function
    assert len(seen) == 3 * 4
    for total, normalized in seen:
        mean = normalized.mean(dim=(0, 2, 3))
        var = normalized.var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)
        assert not torch.allclose(total, normalized)
    plain = _tiny_supernet(get_method("idarts", node_norm="none"))
    plain.probe(x, lambda _c, _n, _o, total, normalized: seen.append((total, normalized)))
    assert all(total is normalized for total, normalized in seen[12:])


def test_idarts_options_change_the_scores_of_a_real_supernet() -> None:
    probe = _probe_batches()
    base = IDarts().op_scores(_tiny_supernet(IDarts()), probe)
    for option in ({"decorrelate_over": "edge"}, {"similarity": "inner"},
                   {"node_output": "post-norm"}):
        method = get_method("idarts", **option)
        assert method.options().items() >= option.items()
        scores = method.op_scores(_tiny_supernet(method), probe)
        finite = np.isfinite(base[0])
        assert not np.allclose(scores[0][finite], base[0][finite]), option
        d = method.discretize(_tiny_supernet(method), probe)
        build_network(build_genotype(d.normal, d.reduce, 4), dataset="digits", C=4, layers=3)
    # Without node normalization the node before and after it is the same tensor.
    pre, post = (get_method("idarts", node_norm="none", node_output=o)
                 for o in ("pre-norm", "post-norm"))
    np.testing.assert_array_equal(pre.op_scores(_tiny_supernet(pre), probe)[0],
                                  post.op_scores(_tiny_supernet(post), probe)[0])


@pytest.mark.parametrize("option", ["decorrelate_over", "similarity", "node_output",
                                    "gs_order"])
def test_idarts_refuses_unknown_option_values(option: str) -> None:
    with pytest.raises(NasctlError, match=f"{option} must be one of"):
        get_method("idarts", **{option: "bogus"})


def test_idarts_options_through_the_cli(tmp_path: Path) -> None:
    tiny = ["search", "--method", "idarts", "--dataset", "digits", "-C", "4",
            "--layers", "3", "--batch-size", "8", "--steps-per-epoch", "1", "--epochs", "1",
            "--probe-batches", "1", "--device", "cpu", "--json"]
    chosen = {"decorrelate_over": "edge", "similarity": "inner", "node_output": "post-norm"}
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*tiny, "--decorrelate-over", "edge", "--similarity",
                                      "inner", "--node-output", "post-norm", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["method_options"].items() >= chosen.items()
    assert read_genotype(out / "genotype.json").provenance["discretization"].items() \
        >= chosen.items()
    assert_refused(nasctl(*tiny, "--similarity", "dot", "--out", str(tmp_path / "b")),
                   "similarity must be one of cosine, inner")
