"""What export and bench report while they work, typed like ``nasctl.runs``' run events:
the CLI renders them (a spinner on a terminal, one line per step off one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Stage:
    """A step begins: "export onnx", "fp16 graph", "runtime ort fp32", "counting"...
    ``loading``: inputs are still being read and checked, so a refusal may follow (off a
    terminal such steps print nothing: the refusal then stays the only line)."""

    name: str
    loading: bool = False

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Timing:
    """Latency of one (runtime, precision) at one batch size is being measured."""

    runtime: str
    precision: str
    batch: int

    def __str__(self) -> str:
        return f"timing {self.runtime} {self.precision} at batch {self.batch}"


@dataclass(frozen=True)
class EngineStep:
    """TensorRT parses a graph or builds an engine from it (minutes on a large network)."""

    step: Literal["parse", "build"]
    detail: str  # the graph parsed, or the engine's precision

    def __str__(self) -> str:
        return f"TensorRT {self.step} {self.detail}"


DeployEvent = Stage | Timing | EngineStep
OnDeployEvent = Callable[[DeployEvent], None]
