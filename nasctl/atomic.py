"""Atomic file writes: write to a temporary file in the same folder, fsync, rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def _atomic(path: str | os.PathLike[str], mode: str, write: Callable[[IO[Any]], None]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file normal permissions
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, a quota: name the file that could not be written
        Path(tmp).unlink(missing_ok=True)
        if str(target) in str(exc):
            raise
        raise OSError(f"{target}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return _atomic(path, "wb", lambda fh: fh.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return _atomic(path, "w", lambda fh: fh.write(text))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def torch_save(path: str | os.PathLike[str], obj: Any) -> Path:
    """`torch.save` through a temporary file, so a crash never leaves a truncated checkpoint."""
    import torch

    def save(fh: IO[Any]) -> None:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # torch reports a failed write (a full disk) this way
            raise OSError(f"{path}: cannot write the checkpoint ({str(exc).splitlines()[0]})"
                          ) from None

    return _atomic(path, "wb", save)
