"""Latency tables measured once per machine and kept: the cache ``nasctl pipeline
--latency-target`` reads. A table is found by its keys (runtime and version, threads,
batch, CPU, nasctl version, the network's settings), so anything that changes the figures
gives another file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nasctl.errors import NasctlError

if TYPE_CHECKING:
    from nasctl.latency.build import Progress
    from nasctl.latency.measure import MeasureSettings
    from nasctl.latency.table import LatencyTable
    from nasctl.nets.units import Deployment

CALIBRATION_NETWORKS = 6


def cache_dir() -> Path:
    """``$NASCTL_CACHE``, else ``$XDG_CACHE_HOME/nasctl``, else ``~/.cache/nasctl``."""
    if os.environ.get("NASCTL_CACHE"):
        return Path(os.environ["NASCTL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nasctl"


def cache_path(deployment: Deployment, settings: MeasureSettings) -> tuple[Path, dict]:
    """Where this machine's table for ``deployment`` under ``settings`` is kept, and the
    keys it carries."""
    from nasctl.latency.build import environment_keys

    keys = json.loads(json.dumps(environment_keys(settings, deployment.settings), default=str))
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
    name = f"{deployment.settings.get('space')}-{digest[:16]}.json"
    return cache_dir() / "latency" / name, keys


def cached_table(deployment: Deployment, settings: MeasureSettings | None = None,
                 on_progress: Progress | None = None) -> tuple[LatencyTable, bool]:
    """This machine's table for ``deployment`` under ``settings`` (default: ORT CPU, one
    thread, batch 1, fp32), and whether it was reused rather than measured now."""
    from nasctl.latency.build import build_table
    from nasctl.latency.measure import MeasureSettings
    from nasctl.latency.samples import calibration_genotypes
    from nasctl.latency.table import load_table

    settings = settings or MeasureSettings()
    path, keys = cache_path(deployment, settings)
    if path.exists():
        try:
            table = load_table(path)
            table.check_against(keys, allow_foreign=False)
            return table, True
        except NasctlError:
            pass  # damaged or stale: measure it again
    path.parent.mkdir(parents=True, exist_ok=True)
    calibration = calibration_genotypes(deployment, CALIBRATION_NETWORKS)
    return build_table(deployment, settings, path, calibration, on_progress), False
