"""Run folders: config.json, metrics.jsonl, atomic checkpoints, report.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nasctl import atomic
from nasctl.errors import CheckpointError


class RunDir:
    """A run's output folder. Every file it writes survives a crash intact."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def write_config(self, config: dict[str, Any]) -> Path:
        return atomic.write_json(self.file("config.json"), config)

    def read_config(self) -> dict[str, Any]:
        return json.loads(self.file("config.json").read_text())

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line and fsync it, so a crash loses at most the line in flight."""
        with open(self.file("metrics.jsonl"), "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file("metrics.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, keep: int) -> None:
        """Keep the first ``keep`` records (drops lines written after the checkpoint a
        resumed run restarts from)."""
        records = self.read_metrics()[:keep]
        atomic.write_text(
            self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records)
        )

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        return atomic.torch_save(self.file(name), state)

    def write_report(self, report: dict[str, Any]) -> Path:
        return atomic.write_json(self.file("report.json"), report)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a nasctl checkpoint safely (weights_only); any problem is a CheckpointError."""
    import torch

    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file (.pt)")
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files (KeyError, ...)
        from nasctl.export.source import is_onnx_file

        if is_onnx_file(p):
            raise CheckpointError(f"{p}: this is an ONNX file: use it with nasctl bench") from None
        detail = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        suffix = f": {detail}" if detail else ""
        raise CheckpointError(
            f"{p}: not a readable checkpoint (corrupt or truncated?){suffix}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: not a nasctl checkpoint (expected a dict)")
    return state
