"""The one runtime interface: what a runtime consumes, where it computes, which precisions
it runs, and how it is loaded and run.

A runtime says whether it can run here (``unavailable_reason()`` is None) before anything
is loaded; callers report an unavailable runtime instead of crashing on it. A runtime that
loads but silently falls back to another device (ONNX Runtime does that when CUDA libraries
are missing) raises BackendUnavailable from ``load``. Runtimes set no precision flag of
their own: a precision is a file (``Artifacts.onnx[precision]``,
``Artifacts.engines[precision]``) or, for PyTorch, a dtype.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nasctl.errors import BackendUnavailable

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

Consumes = Literal["network", "onnx", "engine"]


@dataclass
class Artifacts:
    """Everything a runtime may load: the PyTorch network, an ONNX graph and a TensorRT
    engine per precision."""

    net: nn.Module | None = None
    onnx: dict[str, str] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None  # ORT TensorRT EP engine/timing caches

    def path_for(self, consumes: Consumes, precision: str) -> str | None:
        if consumes == "onnx":
            return self.onnx.get(precision)
        if consumes == "engine":
            return self.engines.get(precision)
        return None


class Runtime(ABC):
    name: ClassVar[str]
    device: ClassVar[str]  # "cpu" or "cuda"
    consumes: ClassVar[Consumes]
    precisions: ClassVar[tuple[str, ...]]
    # True when run() only enqueues work on the current torch CUDA stream, so latency is
    # measured with CUDA events; otherwise run() returns when the work is done.
    async_cuda: ClassVar[bool] = False

    def __init__(self, precision: str = "fp32", threads: int | None = None) -> None:
        self.precision = precision
        self.threads = threads

    def unavailable_reason(self) -> str | None:
        """None when this runtime can run here at its precision, else why not (one line)."""
        if self.precision not in self.precisions:
            return f"runs {', '.join(self.precisions)}, not {self.precision}"
        return self._unavailable_reason()

    @abstractmethod
    def _unavailable_reason(self) -> str | None: ...

    @abstractmethod
    def load(self, artifacts: Artifacts) -> None: ...

    def try_load(self, artifacts: Artifacts) -> str | None:
        """Load if this runtime can run here; None on success, else why not (one line)."""
        reason = self.unavailable_reason()
        if reason is None:
            try:
                self.load(artifacts)
            except BackendUnavailable as exc:
                reason = str(exc)
        return reason

    def artifact(self, artifacts: Artifacts) -> str:
        """The file this runtime runs at its precision, or BackendUnavailable."""
        path = artifacts.path_for(self.consumes, self.precision)
        if path is None:
            what = "TensorRT engine" if self.consumes == "engine" else "ONNX graph"
            raise BackendUnavailable(f"{self.name}: no {self.precision} {what} to run")
        return path

    @abstractmethod
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Host array in, host array out (used for parity)."""

    def staged(self, inputs: np.ndarray) -> Callable[[], Any]:
        """A zero-argument inference on inputs already placed where the runtime computes
        (used for latency: host<->device copies are not part of the timed region)."""
        return lambda: self.run(inputs)

    def settings(self) -> dict[str, Any]:
        """What a report should record about how this runtime ran (e.g. ORT's graph
        optimization level)."""
        return {}

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"{self.name}: {reason}")


def cuda_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None
