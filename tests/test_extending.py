"""The seams are true: a new method, a new search space and a new cost are each their own
code plus a registration, and the one loop gives them everything (flags, checks, records,
checkpoints, resume, discretization, genotype, the cost's penalty and report)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from nasctl.cli import app
from nasctl.genotypes import Genotype, read_genotype
from nasctl.nets.mbconv import ChainLayout, chain_genotype
from nasctl.nets.units import Unit
from nasctl.search import SearchConfig, make_search_config, run_search
from nasctl.search.cost import COSTS, Cost
from nasctl.search.cost import register as register_cost
from nasctl.search.darts import DARTS_HYPER
from nasctl.search.methods import METHODS, SearchMethod
from nasctl.search.methods import register as register_method
from nasctl.search.options import option
from nasctl.search.space import SPACES, SearchSpace
from nasctl.search.space import register as register_space
from nasctl.settings import POSITIVE

LAYOUT = ChainLayout(stem=8, first=8, stages=((8, 1, 1),), head=16)
CHOICES = ("mbconv_k3_e3", "mbconv_k5_e3")


class ToySupernet(nn.Module):
    """A stem, one layer mixing a 3x3 and a 5x5 conv, a classifier."""

    def __init__(self, activation: Any, num_classes: int) -> None:
        super().__init__()
        self.activation = activation
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.candidates = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1),
                                         nn.Conv2d(8, 8, 5, padding=2)])
        self.head = nn.Linear(8, num_classes)
        self.alpha = nn.Parameter(torch.zeros(2))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p is not self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        w = self.activation(self.alpha)
        x = sum(wi * op(x) for wi, op in zip(w, self.candidates, strict=True))
        return self.head(x.mean((2, 3)))


class ToySpace(SearchSpace):
    name = "toy"
    help = "one mixed layer"

    def build(self, cfg: SearchConfig, method: SearchMethod, num_classes: int,
              device: torch.device) -> ToySupernet:
        return ToySupernet(method.activation, num_classes)

    def arch_record(self, model: ToySupernet) -> dict[str, Any]:
        return {"layer": model.activation(model.alpha).detach().tolist()}

    def labels(self, model: ToySupernet) -> dict[str, Any]:
        return {"choices": list(CHOICES)}

    def default_discretizer(self, method: SearchMethod) -> Any:
        return lambda model, _probe: _Choice(CHOICES[int(model.alpha.argmax())])

    def choice_doc(self, choice: _Choice) -> str:
        return choice.op

    def genotype(self, model: ToySupernet, choice: _Choice, cfg: SearchConfig, name: str,
                 provenance: dict[str, Any]) -> Genotype:
        return chain_genotype(LAYOUT, [choice.op], name, provenance)

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        return {"layers": [genotype.cells["chain"].nodes[n]["op"] for n in
                           sorted(genotype.cells["chain"].nodes)]}


class _Choice:
    def __init__(self, op: str, rule: str = "argmax") -> None:
        self.op, self.settings, self.notes = op, {"rule": rule}, []


@dataclass(frozen=True)
class ToyMethodOptions:
    halve: float = option(2.0, "what the softmax is divided by", POSITIVE)


class ToyMethod(SearchMethod):
    """Halved softmax weights; on the toy space it always keeps the 5x5 conv."""

    name = "toy"
    Options = ToyMethodOptions
    default_ops = ("sep_conv_3x3", "skip_connect")
    hyper = DARTS_HYPER

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha, dim=-1) / self.config.halve

    def regularizer(self, model: Any) -> torch.Tensor:
        return sum(a.pow(2).sum() for a in model.arch_parameters())

    def discretizer(self, space: str) -> Any:
        if space == "toy":
            return lambda _model, _probe: _Choice(CHOICES[1], "always 5x5")
        return None


@dataclass(frozen=True)
class ParamOptions:
    param_target: float | None = option(None, "parameter budget in thousands", POSITIVE)
    param_weight: float = option(1.0, "weight of the parameter penalty", POSITIVE)


class ParamCost(Cost):
    """A cost nasctl does not have: the final network's parameters."""

    name = "params"
    unit = "params"
    Options = ParamOptions

    @property
    def target(self) -> float | None:
        t = self.config.param_target
        return None if t is None else t * 1e3

    @property
    def weight(self) -> float:
        return float(self.config.param_weight)

    def unit_cost(self, unit: Unit) -> float:
        return float(sum(p.numel() for p in unit.build().parameters()))


@pytest.fixture
def toys() -> Iterator[None]:
    register_space(ToySpace)
    register_method(ToyMethod)
    register_cost(ParamCost)
    yield
    SPACES.unregister("toy")
    METHODS.unregister("toy")
    COSTS.unregister("params")


TINY = {"batch_size": 8, "steps_per_epoch": 2, "epochs": 2, "device": "cpu"}


def test_a_toy_space_and_method_get_the_whole_loop(tmp_path: Path, toys: None) -> None:
    result = run_search(SearchConfig(method="toy", space="toy", **TINY), tmp_path / "run")
    genotype = read_genotype(tmp_path / "run" / "genotype.json")
    assert genotype.cells["chain"].nodes[1]["op"] == "mbconv_k5_e3"  # the method's own rule
    assert genotype.provenance["discretization"]["rule"] == "always 5x5"
    history = json.loads((tmp_path / "run" / "arch_history.json").read_text())
    assert history["space"] == "toy" and [h["epoch"] for h in history["history"]] == [0, 1, 2]
    assert history["history"][0]["layer"] == [0.25, 0.25]
    assert result.alphas[0] != [0.0, 0.0]  # the architecture step moved the alpha
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [m["genotype"] for m in metrics] == ["mbconv_k5_e3", "mbconv_k5_e3"]
    # resume works for it too: a finished run continues to the same genotype
    again = run_search(SearchConfig(method="toy", space="toy", **TINY), tmp_path / "run",
                       resume=True)
    assert again.genotype.content_hash() == result.genotype.content_hash()


def test_a_toy_method_on_the_cell_space_uses_the_spaces_default_rule(tmp_path: Path,
                                                                     toys: None) -> None:
    cfg = make_search_config(method="toy", channels=4, layers=3, **TINY)
    result = run_search(cfg, tmp_path / "run")
    assert result.genotype.provenance["discretization"]["rule"] == "top2-edges-strongest-op"
    assert {op for _u, _v, op in result.genotype.cells["normal"].edges(data="op")} <= {
        "sep_conv_3x3", "skip_connect"}


def test_a_toy_cost_gets_a_flag_a_penalty_and_a_report(tmp_path: Path, toys: None) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "search", "--dataset", "digits", "--method", "toy", "--halve", "4", "-C", "4",
        "--layers", "3", "--batch-size", "8", "--steps-per-epoch", "2", "--epochs", "1",
        "--device", "cpu", "--param-target", "1000", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    params = next(c for c in summary["costs"] if c["cost"] == "params")
    assert params["target"] == 1_000_000 and params["predicted"] > 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["cost_options"]["param_target"] == 1000.0
    assert config["method_options"] == {"halve": 4.0}
    provenance = read_genotype(out / "genotype.json").provenance["discretization"]
    assert provenance["params_cost"] == {"param_target": 1000.0, "param_weight": 1.0}
    refused = CliRunner().invoke(app, ["search", "--param-target", "-1", "--out",
                                       str(tmp_path / "bad")])
    assert "the params cost: param_target must be > 0" in str(refused.exception)
