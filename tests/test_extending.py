"""The seams are true: a new method and a new search space are each their own code plus a
registration, and the one loop gives them everything (records, checkpoints, resume,
discretization, genotype)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nasctl.genotypes import Genotype, read_genotype
from nasctl.nets.mbconv import ChainLayout, chain_genotype
from nasctl.search import SearchConfig, run_search
from nasctl.search.darts import DARTS_HYPER
from nasctl.search.methods import METHODS, SearchMethod
from nasctl.search.methods import register as register_method
from nasctl.search.space import SPACES, SearchSpace
from nasctl.search.space import register as register_space

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


class ToyMethod(SearchMethod):
    """Halved softmax weights; on the toy space it always keeps the 5x5 conv."""

    name = "toy"
    default_ops = ("sep_conv_3x3", "skip_connect")
    hyper = DARTS_HYPER

    def activation(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha, dim=-1) / 2

    def regularizer(self, model: Any) -> torch.Tensor:
        return sum(a.pow(2).sum() for a in model.arch_parameters())

    def discretizer(self, space: str) -> Any:
        if space == "toy":
            return lambda _model, _probe: _Choice(CHOICES[1], "always 5x5")
        return None


@pytest.fixture
def toys() -> Iterator[None]:
    register_space(ToySpace)
    register_method(ToyMethod)
    yield
    SPACES.pop("toy")
    METHODS.pop("toy")


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
    cfg = SearchConfig(method="toy", channels=4, layers=3, **TINY)
    result = run_search(cfg, tmp_path / "run")
    assert result.genotype.provenance["discretization"]["rule"] == "top2-edges-strongest-op"
    assert {op for _u, _v, op in result.genotype.cells["normal"].edges(data="op")} <= {
        "sep_conv_3x3", "skip_connect"}
