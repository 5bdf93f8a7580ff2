"""Devices, mixed precision and reproducibility: the few places that differ on CUDA."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nasctl.errors import BackendUnavailable, NasctlError

AMP_CHOICES = ("off", "bf16", "fp16")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise NasctlError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {spec!r} asked for, but CUDA is not available here")
    return device


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a (strictly) channels_last 4-D tensor, else contiguous_format."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``; None means full fp32.

    AMP is a CUDA feature here: on CPU it is ignored (fp32), since CPU autocast is slower
    than fp32 for these convolution-heavy networks."""
    if amp not in AMP_CHOICES:
        raise NasctlError(f"unknown --amp {amp!r} (choose from {', '.join(AMP_CHOICES)})")
    if amp == "off" or device.type != "cuda":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager[Any]:
    dtype = amp_dtype(amp, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A scaler that is active only for fp16 on CUDA (bf16 needs none)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(amp, device) == torch.float16)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_plain(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_python_state(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_plain() -> tuple[Any, ...]:
    # Plain types only, so checkpoints load with torch.load(weights_only=True).
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
            float(cached))


def _as_python_state(state: Any) -> tuple[Any, ...]:
    # weights_only loading turns the tuple state into lists; random.setstate needs tuples.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


@contextlib.contextmanager
def inference_mode() -> Iterator[None]:
    with torch.inference_mode():
        yield
