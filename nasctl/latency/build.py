"""Building a latency table for a deployment: time every unit that can be timed alone,
time a few whole calibration networks, fit the rest (:mod:`nasctl.latency.fit`), write
the table atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nasctl.atomic import write_json
from nasctl.errors import NasctlError
from nasctl.genotypes.io import genotype_to_dict
from nasctl.latency.fit import Fit, Observed, fit, kind_of, size_of
from nasctl.latency.measure import (
    MeasureSettings,
    Timer,
    Timing,
    check_runtime,
    clock_of,
    harness_of,
    randomize_batchnorm,
)
from nasctl.latency.table import Entry, LatencyTable

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment, Unit

Progress = Callable[[int, int, str], None]


def environment_keys(settings: MeasureSettings, deployment_settings: dict[str, Any]
                     ) -> dict[str, Any]:
    """The keys a table measured here, now, with ``settings`` would carry."""
    from nasctl import __version__
    from nasctl.deploy.bench import host_info
    from nasctl.deploy.runtimes import RUNTIMES

    cls = RUNTIMES.get(settings.runtime)
    device = host_info().cpu
    if cls is not None and cls.device == "cuda":
        import torch

        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        import onnxruntime

        version: str | None = onnxruntime.__version__
    except ImportError:
        version = None
    return {"runtime": settings.runtime, "runtime_version": version,
            "provider": getattr(cls, "provider", settings.runtime),
            "precision": settings.precision, "threads": settings.threads,
            "batch": settings.batch, "device": device, "opset": settings.opset,
            "nasctl_version": __version__, "settings": deployment_settings}


def deployment_from_settings(settings: dict[str, Any]) -> Deployment:
    """The deployment a table's ``keys.settings`` describe."""
    space = settings.get("space")
    try:
        if space == "cell":
            from nasctl.nets.cell_units import CellDeployment

            return CellDeployment(settings["ops"], settings["dataset"], settings["C"],
                                  settings["layers"], settings["num_nodes"])
        if space == "mbconv":
            from nasctl.nets.chain_units import ChainDeployment
            from nasctl.nets.mbconv import ChainLayout

            lay = settings["layout"]
            layout = ChainLayout(lay["stem"], lay["first"],
                                 tuple(tuple(s) for s in lay["stages"]), lay["head"])
            return ChainDeployment(layout, settings["input_size"], settings["num_classes"],
                                   settings["kernels"], settings["expansions"],
                                   settings["dataset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NasctlError(f"latency table settings for the {space} space are incomplete "
                          f"({type(exc).__name__}: {exc})") from None
    raise NasctlError(f"latency table settings name an unknown space {space!r}")


def build_table(deployment: Deployment, settings: MeasureSettings,
                out: str | os.PathLike[str], calibration: Sequence[Genotype],
                on_progress: Progress | None = None) -> LatencyTable:
    """Measure ``deployment``'s units and ``calibration`` networks; write the table."""
    progress = on_progress or (lambda done, total, what: None)
    clock = clock_of(check_runtime(settings), settings.threads)
    keys = environment_keys(settings, deployment.settings)
    catalogue = deployment.catalogue()
    plans = [(unit, harness_of(unit)) for unit in catalogue]
    total = sum(1 for _u, h in plans if h is not None) + len(calibration)
    done = 0
    timings: dict[str, tuple[Timing, str]] = {}
    with Timer(settings) as timer:
        for unit, how in plans:
            if how is None:
                continue
            progress(done, total, unit.key)
            timings[unit.key] = (timer.time_unit(unit, how), how)
            done += 1
        observed = []
        reference: dict[str, Any] | None = None
        for genotype in calibration:
            name = genotype.name or "calibration"
            progress(done, total, f"network {name}")
            net = deployment.network(genotype)
            randomize_batchnorm(net)
            timing = timer.time_network(net, deployment.input_shape)
            observed.append(Observed(name, timing.median_ms, deployment.units(genotype)))
            if reference is None:
                reference = {"name": name, "genotype": genotype_to_dict(genotype),
                             "ms": timing.median_ms}
            done += 1
    progress(done, total, "fitting")
    units = {u.key: u for u in catalogue}
    for o in observed:
        units.update({u.key: u for u in o.units})
    sizes = {key: size_of(u) for key, u in units.items() if key not in timings}
    result = fit(observed, {k: t.median_ms for k, (t, _h) in timings.items()}, sizes)
    entries = table_entries(units, timings, result, sizes)
    table = LatencyTable(
        keys=keys, entries=entries,
        measurement={**settings.to_dict(),
                     "timed": "slope between graphs with copies[0] and copies[1] of the "
                              "unit; median over rounds of per-round medians",
                     "clock": clock, "calibration_networks": len(calibration),
                     "reference": reference},
        fit=result.to_dict(), created=datetime.now(UTC).isoformat(timespec="seconds"),
        path=os.fspath(out))
    write_json(out, table.to_dict())
    progress(total, total, "written")
    return table


def table_entries(units: dict[str, Unit], timings: dict[str, tuple[Timing, str]],
                  result: Fit, sizes: dict[str, float]) -> dict[str, Entry]:
    """Each unit's entry: timed units scaled by the in-network factor, the others at
    their fitted cost."""
    entries: dict[str, Entry] = {}
    for key, unit in units.items():
        if key in timings:
            t, how = timings[key]
            factor = result.slowdown
            entries[key] = Entry(round(t.median_ms * factor, 5), t.median_ms, t.p10_ms,
                                 t.p90_ms, t.runs, how, round(factor, 4))
        else:
            cost = round(result.per_element_ms.get(kind_of(unit), 0.0) * sizes[key], 5)
            entries[key] = Entry(cost, cost, cost, cost, 0, "fitted")
    return entries
