"""iDARTS (Wang, Yang, Huang, Wang; IEEE TNNLS 2023): node normalization during search and
decorrelation discretization. The paper's formulas are not public; docs/methods.md states
what its abstract says and how each named option here reads it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import torch

from nasctl.errors import NasctlError
from nasctl.genotypes.spaces import DARTS_OPS
from nasctl.search.darts import DARTS_HYPER
from nasctl.search.discretize import choose_with_fallback, top_edges
from nasctl.search.methods import Discretized, SearchMethod, register
from nasctl.search.supernet import NodeNorm, SearchNetwork

Decorrelation = Literal["lstsq", "gram-schmidt", "none"]
DECORRELATIONS = ("lstsq", "gram-schmidt", "none")


def decorrelation_scores(gram: np.ndarray, mode: Decorrelation = "lstsq",
                         order: list[int] | None = None) -> np.ndarray:
    """Score m op outputs against a node output from their Gram matrix.

    ``gram`` is (m+1)x(m+1) over the flattened outputs v_1..v_m and the node output n
    (last). Each op's *decorrelated* output r_k is v_k minus its least-squares projection
    on a set S of other ops; the score is cos(n, r_k).

    - ``lstsq``: S = every other op (symmetric: r_k is the part of v_k no other op explains;
      the score is the partial correlation of the node with op k);
    - ``gram-schmidt``: S = the ops before k in ``order`` (default: as given);
    - ``none``: S = {} (plain cosine, no decorrelation).

    An op the others explain completely (r_k = 0) scores 0.
    """
    m = gram.shape[0] - 1
    g_ops, g_node, n2 = gram[:m, :m], gram[:m, m], gram[m, m]
    position = {k: i for i, k in enumerate(order if order is not None else range(m))}
    scores = np.zeros(m)
    for k in range(m):
        if mode == "lstsq":
            others = [j for j in range(m) if j != k]
        elif mode == "gram-schmidt":
            others = [j for j in range(m) if position[j] < position[k]]
        elif mode == "none":
            others = []
        else:
            raise NasctlError(f"unknown decorrelation {mode!r} ({', '.join(DECORRELATIONS)})")
        r2, rn = g_ops[k, k], g_node[k]
        if others:
            beta = np.linalg.pinv(g_ops[np.ix_(others, others)], rcond=1e-10,
                                  hermitian=True) @ g_ops[others, k]
            r2 = r2 - g_ops[k, others] @ beta
            rn = rn - g_node[others] @ beta
        scale = float(np.sqrt(max(r2, 0.0) * n2))
        scores[k] = rn / scale if scale > 1e-12 * max(g_ops[k, k] * n2, 1e-300) ** 0.5 else 0.0
    return scores


class _GramCollector:
    """Accumulates, per (cell, node), the Gram matrix of its op outputs and its sum."""

    def __init__(self) -> None:
        self.grams: dict[tuple[int, int], np.ndarray] = {}
        self.keys: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def __call__(self, cell: int, node: int, outputs: dict[tuple[int, int], torch.Tensor],
                 total: torch.Tensor) -> None:
        keys = sorted(outputs)
        v = torch.stack([outputs[k].flatten() for k in keys] + [total.flatten()]).double()
        gram = (v @ v.T).cpu().numpy()
        slot = (cell, node)
        self.keys[slot] = keys
        self.grams[slot] = self.grams[slot] + gram if slot in self.grams else gram


@register
class IDarts(SearchMethod):
    name = "idarts"
    default_ops = DARTS_OPS
    hyper = DARTS_HYPER
    needs_probe = True

    def __init__(self, node_norm: NodeNorm = "bn", decorrelation: Decorrelation = "lstsq",
                 gs_order: Literal["alpha", "index"] = "alpha") -> None:
        if node_norm not in ("bn", "rms", "none"):
            raise NasctlError(f"--node-norm must be bn, rms or none, got {node_norm!r}")
        if decorrelation not in DECORRELATIONS:
            raise NasctlError(f"--decorrelation must be one of {', '.join(DECORRELATIONS)}, "
                              f"got {decorrelation!r}")
        if gs_order not in ("alpha", "index"):
            raise NasctlError(f"--gs-order must be alpha or index, got {gs_order!r}")
        self._node_norm: NodeNorm = node_norm
        self.decorrelation: Decorrelation = decorrelation
        self.gs_order = gs_order

    @property
    def node_norm(self) -> NodeNorm:
        return self._node_norm

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha, dim=-1)

    def op_scores(self, model: SearchNetwork,
                  probe: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[np.ndarray]:
        """[num_edges, num_ops] decorrelation scores for (normal, reduce), averaged over the
        cells of each type; ops never computed (``none``) score -inf."""
        collect = _GramCollector()
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
            if self.gs_order == "alpha":  # strongest alpha first keeps its whole output
                order = sorted(range(len(keys)), key=lambda i: -alphas[t][keys[i]])
            scores = decorrelation_scores(gram, self.decorrelation, order)
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

    def options(self) -> dict[str, Any]:
        return {"node_norm": self.node_norm, "decorrelation": self.decorrelation,
                "gs_order": self.gs_order, "score": "cos(node, decorrelated op output)"}
