"""iDARTS (Wang, Yang, Huang, Wang; IEEE TNNLS 2023): node normalization during search and
decorrelation discretization. The paper's formulas are not public; docs/methods.md states
what its abstract says and how each named option here reads it."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nasctl.errors import NasctlError
from nasctl.genotypes.spaces import DARTS_OPS
from nasctl.search.darts import DARTS_HYPER
from nasctl.search.discretize import choose_with_fallback, top_edges
from nasctl.search.methods import Discretized, SearchMethod, register
from nasctl.search.options import option
from nasctl.search.space import Discretizer
from nasctl.search.supernet import NodeNorm, SearchNetwork
from nasctl.settings import Rule

Decorrelation = Literal["lstsq", "gram-schmidt", "none"]
DECORRELATIONS = ("lstsq", "gram-schmidt", "none")
DecorrelateOver = Literal["node", "edge"]
Similarity = Literal["cosine", "inner"]
NodeOutput = Literal["pre-norm", "post-norm"]
# A residual below this fraction of its op's norm is numerical noise: the op is explained.
_RESIDUAL_TOL = 1e-6


def decorrelation_scores(gram: np.ndarray, mode: Decorrelation = "lstsq",
                         order: Sequence[int] | None = None,
                         groups: Sequence[Hashable] | None = None,
                         similarity: Similarity = "cosine") -> np.ndarray:
    """Score m op outputs against a node output from their Gram matrix.

    ``gram`` is (m+1)x(m+1) over the flattened outputs v_1..v_m and the node output n
    (last). Each op's *decorrelated* output r_k is v_k minus its least-squares projection
    on a set S of other ops of its group (``groups[k]``; default: all ops one group):

    - ``lstsq``: S = every other op of the group (symmetric: r_k is the part of v_k no
      other op explains);
    - ``gram-schmidt``: S = the group's ops before k in ``order`` (default: as given);
    - ``none``: S = {} (no decorrelation).

    The score is ``cos(n, r_k)`` (``cosine``) or ``<n, r_k> / ||n||^2`` (``inner``: the inner
    product, divided by a factor every op of the node shares, so scores of different nodes
    and cells are on one scale). An op the others explain completely (r_k = 0) scores 0.
    """
    if mode not in DECORRELATIONS:
        raise NasctlError(f"unknown decorrelation {mode!r} ({', '.join(DECORRELATIONS)})")
    if similarity not in ("cosine", "inner"):
        raise NasctlError(f"unknown similarity {similarity!r} (cosine or inner)")
    m = gram.shape[0] - 1
    g_ops, g_node, n2 = gram[:m, :m], gram[:m, m], gram[m, m]
    position = {k: i for i, k in enumerate(order if order is not None else range(m))}
    group = list(groups) if groups is not None else [0] * m
    scores = np.zeros(m)
    if n2 <= 0:
        return scores
    for k in range(m):
        same = [j for j in range(m) if j != k and group[j] == group[k]]
        if mode == "lstsq":
            others = same
        elif mode == "gram-schmidt":
            others = [j for j in same if position[j] < position[k]]
        else:
            others = []
        r2, rn = g_ops[k, k], g_node[k]
        if others:
            beta = np.linalg.pinv(g_ops[np.ix_(others, others)], rcond=1e-10,
                                  hermitian=True) @ g_ops[others, k]
            r2 = r2 - g_ops[k, others] @ beta
            rn = rn - g_node[others] @ beta
        if r2 <= _RESIDUAL_TOL**2 * g_ops[k, k]:
            continue
        scores[k] = rn / np.sqrt(r2 * n2) if similarity == "cosine" else rn / n2
    return scores


class _GramCollector:
    """Accumulates, per (cell, node), the Gram matrix of its op outputs and of the node's
    output (``pre-norm``: the weighted sum; ``post-norm``: after node normalization)."""

    def __init__(self, node_output: NodeOutput) -> None:
        self.node_output = node_output
        self.grams: dict[tuple[int, int], np.ndarray] = {}
        self.keys: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def __call__(self, cell: int, node: int, outputs: dict[tuple[int, int], torch.Tensor],
                 total: torch.Tensor, normalized: torch.Tensor) -> None:
        keys = sorted(outputs)
        n = normalized if self.node_output == "post-norm" else total
        v = torch.stack([outputs[k].flatten() for k in keys] + [n.flatten()]).double()
        gram = (v @ v.T).cpu().numpy()
        slot = (cell, node)
        self.keys[slot] = keys
        self.grams[slot] = self.grams[slot] + gram if slot in self.grams else gram


@dataclass(frozen=True)
class IDartsOptions:
    node_norm: str = option("bn", "normalization of each node during search: bn, rms or none",
                            Rule(choices=("bn", "rms", "none")))
    decorrelation: str = option("lstsq", "decorrelation of op outputs before scoring: lstsq, "
                                "gram-schmidt or none", Rule(choices=DECORRELATIONS))
    gs_order: str = option("alpha", "gram-schmidt order: alpha (strongest first) or index",
                           Rule(choices=("alpha", "index")))
    decorrelate_over: str = option("node", "decorrelate an op against the ops of all its "
                                   "node's in-edges (node) or of its own edge (edge)",
                                   Rule(choices=("node", "edge")))
    similarity: str = option("cosine", "score: cosine or inner (product) of the node output "
                             "and the decorrelated op output", Rule(choices=("cosine", "inner")))
    node_output: str = option("pre-norm", "node output the ops are scored against: pre-norm "
                              "or post-norm", Rule(choices=("pre-norm", "post-norm")))


@register
class IDarts(SearchMethod):
    name = "idarts"
    Options = IDartsOptions
    default_ops = DARTS_OPS
    hyper = DARTS_HYPER
    needs_probe = True

    @property
    def node_norm(self) -> NodeNorm:
        return self.config.node_norm  # type: ignore[no-any-return]

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha, dim=-1)

    def op_scores(self, model: SearchNetwork,
                  probe: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[np.ndarray]:
        """[num_edges, num_ops] decorrelation scores for (normal, reduce), averaged over the
        cells of each type; ops never computed (``none``) score -inf."""
        collect = _GramCollector(self.config.node_output)
        device = next(model.parameters()).device
        batches = 0
        for x, _y in probe:
            model.probe(x.to(device), collect)
            batches += 1
        if batches == 0:
            raise NasctlError("decorrelation discretization needs at least one probe batch")
        alphas = [w.detach().cpu().double().numpy() for w in model.arch_weights()]
        num_edges, num_ops = alphas[0].shape
        sums = [np.zeros((num_edges, num_ops)), np.zeros((num_edges, num_ops))]
        for slot, gram in collect.grams.items():
            t = 1 if model.cells[slot[0]].reduction else 0
            keys = collect.keys[slot]
            order = None
            if self.config.gs_order == "alpha":  # strongest alpha first keeps its whole output
                order = sorted(range(len(keys)), key=lambda i: -alphas[t][keys[i]])
            groups = [e for e, _k in keys] if self.config.decorrelate_over == "edge" else None
            scores = decorrelation_scores(gram, self.config.decorrelation, order, groups,
                                          self.config.similarity)
            for (e, k), s in zip(keys, scores, strict=True):
                sums[t][e, k] += s
        result = []
        for t in (0, 1):
            n_cells = sum(1 for cell in model.cells if cell.reduction == bool(t))
            mean = sums[t] / max(n_cells, 1)
            computed = np.zeros_like(mean, dtype=bool)
            for (c, _node), keys in collect.keys.items():
                if model.cells[c].reduction == bool(t):
                    for e, k in keys:
                        computed[e, k] = True
            result.append(np.where(computed, mean, -np.inf))
        return result

    def discretize(self, model: SearchNetwork,
                   probe: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None
                   ) -> Discretized:
        if probe is None:
            raise NasctlError("idarts discretization needs probe batches")
        choices = []
        for scores in self.op_scores(model, probe):
            edges = top_edges(scores, model.ops, model.num_nodes, k=2)
            choices.append(choose_with_fallback(edges, scores, model.ops, model.num_nodes))
        return Discretized(choices[0], choices[1], self.options())

    def discretizer(self, space: str) -> Discretizer | None:
        return self.discretize if space == "cell" else None
