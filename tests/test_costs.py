"""Every registered cost, in every registered space, under every registered method: the
expectation is differentiable in the alphas (the penalty's gradient is non-zero and equals
a finite-difference estimate), a one-hot mixture's expectation is the prediction of the
network it picks, and the repair meets a target the rule alone misses."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from nasctl.search import make_search_config
from nasctl.search.cost import COSTS, costs_of, repair
from nasctl.search.methods import METHODS, get_method
from nasctl.search.options import specs
from nasctl.search.space import SPACES, get_space

# Tiny supernets and tiny final networks (the deployment the costs price).
SIZES: dict[str, dict[str, Any]] = {
    "cell": {"channels": 4, "layers": 3, "deploy_dataset": "digits", "deploy_channels": 4,
             "deploy_layers": 3},
    "mbconv": {"width_mult": 0.25, "deploy_resolution": 32, "deploy_classes": 10},
}
CASES = list(itertools.product(SPACES.names(), METHODS.names(), COSTS.names()))


def _bound(space_name: str, method_name: str, cost_name: str, tables: Any,
           target_share: float | None = None) -> tuple[Any, Any, Any, Any]:
    """(space, supernet, bound cost, config) with the cost's target at ``target_share``
    of the current expectation (None: no target)."""
    cost_cls = COSTS.cls(cost_name)
    declared = {s.name for s in specs(cost_cls.Options, cost_name)}
    values: dict[str, Any] = {**SIZES[space_name]}
    table = f"{cost_name}_table" if f"{cost_name}_table" in declared else None
    if table is not None:
        values[table] = str(tables(space_name))
    cfg = make_search_config(space=space_name, method=method_name, **values)
    method = get_method(method_name)
    cfg = cfg.resolved(method)
    space = get_space(space_name, cfg.space_options)
    torch.manual_seed(0)
    model = space.build(cfg, method, 10, torch.device("cpu"))
    for alpha in model.arch_parameters():
        alpha.data = torch.randn_like(alpha, dtype=torch.float64) * 0.5
    (cost,) = [c for c in costs_of(cfg) if c.name == cost_name]
    bound = cost.bind(space.deployment(cfg))
    if target_share is not None:
        target_name = next(n for n in declared if n.endswith("_target"))
        expected = float(bound.expected(space.groups(model)).detach())
        values[target_name] = target_share * expected / cost_cls.target_scale
        cfg = make_search_config(space=space_name, method=method_name, **values)
        (cost,) = [c for c in costs_of(cfg) if c.name == cost_name]
        bound = cost.bind(space.deployment(cfg))
    return space, model, bound, cfg


@pytest.mark.parametrize(("space_name", "method_name", "cost_name"), CASES)
def test_the_penalty_gradient_is_exact(space_name: str, method_name: str, cost_name: str,
                                       latency_tables: Any) -> None:
    space, model, bound, _cfg = _bound(space_name, method_name, cost_name, latency_tables,
                                       target_share=0.6)
    penalty = lambda: bound.penalty(space.groups(model))  # noqa: E731
    alphas = model.arch_parameters()
    grads = torch.autograd.grad(penalty(), alphas)
    assert any(g.abs().max() > 0 for g in grads)
    eps = 1e-6
    for alpha, grad in zip(alphas, grads, strict=True):
        flat = alpha.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 5)):  # a few entries each
            keep = float(flat[i])
            with torch.no_grad():
                flat[i] = keep + eps
                up = float(penalty())
                flat[i] = keep - eps
                down = float(penalty())
                flat[i] = keep
            assert (up - down) / (2 * eps) == pytest.approx(float(grad.view(-1)[i]),
                                                            rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(("space_name", "cost_name"),
                         list(itertools.product(SPACES.names(), COSTS.names())))
def test_repair_meets_a_target_between_the_cheapest_and_the_choice(
        space_name: str, cost_name: str, latency_tables: Any) -> None:
    space, model, bound, cfg = _bound(space_name, "darts", cost_name, latency_tables)

    def predict(kept: list[list[int]]) -> float:
        return bound.predict(space.genotype(model, space.with_kept(None, kept, model), cfg,
                                            "g", {}))

    groups = space.groups(model)
    chosen = [[max((k for k, op in enumerate(g.candidates) if op != "none"),
                   key=lambda k, row=row: row[k])] for g, row in zip(groups, bound.prices,
                                                                       strict=True)]
    if space_name == "cell":  # one op per node: the most expensive one, on its first edge
        chosen = [ks if g.label.split()[1].split("->")[0] == "0" else []
                  for g, ks in zip(groups, chosen, strict=True)]
    floor = predict(space.cheapest(bound.prices))
    start = predict(chosen)
    assert floor < start
    target = (floor + start) / 2
    bound.cost.config = type(bound.cost.config)(**{
        **bound.cost.config.__dict__,
        next(n for n in bound.cost.config.__dict__ if n.endswith("_target")):
            target / bound.cost.target_scale})
    kept, done = repair(bound, groups, chosen, predict)
    assert done.met and done.swaps and predict(kept) <= target < done.before
    assert all(len(a) == len(b) for a, b in zip(kept, chosen, strict=True))  # swaps only


@pytest.fixture(scope="session")
def latency_tables(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A synthetic latency table per space at the tiny deployment settings, keyed as this
    machine would key it: every unit any network can deploy, priced from its MACs plus a
    per-kind overhead (measuring takes minutes; tests/test_latency_table.py measures)."""
    from nasctl.atomic import write_json
    from nasctl.latency.build import environment_keys
    from nasctl.latency.measure import MeasureSettings
    from nasctl.latency.table import Entry, LatencyTable
    from nasctl.search.macs import conv_fc_macs

    built: dict[str, Path] = {}

    def table(space_name: str) -> Path:
        if space_name not in built:
            cfg = make_search_config(space=space_name, **SIZES[space_name]).resolved(
                get_method("darts"))  # DARTS's ops hold every other method's
            deployment = get_space(space_name, cfg.space_options).deployment(cfg)
            entries = {}
            for unit in deployment.catalogue():
                ms = 1e-3 + conv_fc_macs(unit) * 1e-9 + 1e-4 * len(unit.key.split()[0])
                entries[unit.key] = Entry(ms, ms, ms, ms, 0, "fitted")
            path = tmp_path_factory.mktemp("tables") / f"{space_name}.json"
            keys = environment_keys(MeasureSettings(), deployment.settings)
            write_json(path, LatencyTable(keys, entries).to_dict())
            built[space_name] = path
        return built[space_name]

    return table


@pytest.mark.parametrize("name", ["DARTS_V2", "FairDARTS_a", "PDARTS"])
def test_the_mac_cost_of_a_network_is_what_the_counter_counts(name: str) -> None:
    from nasctl.genotypes import load_genotype
    from nasctl.genotypes.spaces import DARTS_OPS
    from nasctl.nets import build_network
    from nasctl.nets.cell_units import CellDeployment
    from nasctl.nets.counting import count_macs
    from nasctl.search.macs import MacCost, MacOptions

    bound = MacCost(MacOptions()).bind(CellDeployment(DARTS_OPS, "cifar10"))
    genotype = load_genotype(name)
    net = build_network(genotype, dataset="cifar10", auxiliary=False)
    assert bound.predict(genotype) == count_macs(net, 32).convfc


@pytest.mark.parametrize("cost_name", COSTS.names())
def test_a_one_hot_chain_expects_what_its_network_is_predicted_to_cost(
        cost_name: str, latency_tables: Any) -> None:
    """With the glue of the picked network recorded, the expectation of a mixture that
    picks exactly one block per layer is that network's prediction."""
    from nasctl.search.budget import Budget
    from nasctl.search.mbconv import strongest_rule

    space, model, bound, cfg = _bound("mbconv", "darts", cost_name, latency_tables,
                                      target_share=0.8)
    with torch.no_grad():
        for i, alpha in enumerate(model.arch_parameters()):
            alpha.fill_(-30.0)
            alpha[i % alpha.numel()] = 30.0  # softmax: one-hot to float64 precision
    budget = Budget(cfg, space, model)
    choice = strongest_rule(model)
    genotype = space.genotype(model, choice, cfg, "g", {})
    record = budget.record(choice, genotype)[cost_name]
    assert record["expected"] == pytest.approx(record["predicted"], rel=1e-9)
