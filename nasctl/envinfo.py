"""What this machine offers: versions, devices, runtimes."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from nasctl import __version__


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def tensorrt_status() -> str:
    """TensorRT's version, or why it is unusable. `tensorrt-stubs` installs a bare
    `tensorrt` namespace package, so a successful import alone proves nothing."""
    try:
        import tensorrt as trt
    except ImportError:
        return "not installed"
    except Exception as exc:  # a broken install raises all sorts
        return f"unusable ({type(exc).__name__}: {exc})"
    if not hasattr(trt, "Builder"):
        return "not installed (only type stubs present)"
    return str(getattr(trt, "__version__", "unknown version"))


def onnxruntime_build() -> str:
    """Which ONNX Runtime build is importable. ``onnxruntime`` and ``onnxruntime-gpu``
    install the same package folder and the last one installed wins, so when both
    distributions are present the answer says so."""
    cpu, gpu = _version("onnxruntime"), _version("onnxruntime-gpu")
    installed = [f"{name} {v}" for name, v in (("onnxruntime", cpu), ("onnxruntime-gpu", gpu))
                 if v != "not installed"]
    if not installed:
        return "not installed"
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"unusable ({exc})"
    build = "GPU" if "CUDAExecutionProvider" in ort.get_available_providers() else "CPU"
    text = f"{ort.__version__} ({build} build)"
    if len(installed) > 1:
        text += (f"; warning: both {' and '.join(installed)} are installed and share one "
                 "folder: pip uninstall -y onnxruntime onnxruntime-gpu, then install one")
    return text


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "nasctl": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torchvision": _version("torchvision"),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "onnx": _version("onnx"),
        "onnxruntime": onnxruntime_build(),
        "tensorrt": tensorrt_status(),
        "networkx": _version("networkx"),
        "numpy": _version("numpy"),
    }
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    return info
