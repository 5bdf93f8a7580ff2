"""Predictions for models, checked against measurement on the table's runtime and settings
(what `nasctl latency predict` reports)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.errors import CheckpointError, GenotypeError
from nasctl.latency.build import deployment_from_settings, environment_keys
from nasctl.latency.measure import (
    MeasureSettings,
    Reference,
    Timer,
    randomize_batchnorm,
)
from nasctl.latency.table import LatencyTable, LatencyTableError, Prediction, predict

if TYPE_CHECKING:
    from nasctl.genotypes import Genotype
    from nasctl.nets.units import Deployment

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class PredictRow:
    """One model: predicted ms, and with a measurement the measured median and the error
    of the prediction in % of the measurement."""

    model: str
    genotype: str | None
    predicted_ms: float
    prediction: Prediction
    measured_ms: float | None = None
    measured_p10_ms: float | None = None
    measured_p90_ms: float | None = None
    error_pct: float | None = None
    measured_raw_ms: float | None = None
    host_speed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["parts"] = doc.pop("prediction")["parts"]
        return {k: v for k, v in doc.items() if v is not None}


def resolve_genotype(spec: str) -> Genotype:
    """MODEL: a training checkpoint (its genotype), a genotype file or a zoo name."""
    from nasctl.genotypes.io import genotype_from_dict
    from nasctl.genotypes.sources import read_any

    if Path(spec).suffix in CHECKPOINT_SUFFIXES:
        from nasctl.runs import load_checkpoint

        state = load_checkpoint(spec)
        if "genotype" not in state:
            raise CheckpointError(f"{spec}: not a nasctl training checkpoint (no genotype)")
        try:
            return genotype_from_dict(state["genotype"])
        except GenotypeError as exc:
            raise CheckpointError(f"{spec}: bad genotype inside the checkpoint: {exc}") from None
    return read_any(spec)


def table_settings(table: LatencyTable) -> MeasureSettings:
    """The measurement settings a table was made with (its keys and timing plan)."""
    m = table.measurement
    copies = m.get("copies", (1, 5))
    return MeasureSettings(
        runtime=table.keys["runtime"], precision=table.keys["precision"],
        threads=table.keys["threads"], batch=table.keys["batch"], opset=table.keys["opset"],
        copies=(int(copies[0]), int(copies[1])), rounds=int(m.get("rounds", 7)),
        runs=int(m.get("runs", 20)), warmup=int(m.get("warmup", 10)))


def reference_network(table: LatencyTable, deployment: Deployment) -> Reference | None:
    """The table's reference network (its first calibration network), or None for a
    table made without calibration networks."""
    from nasctl.genotypes.io import genotype_from_dict

    doc = table.measurement.get("reference")
    if not isinstance(doc, dict):
        return None
    try:
        genotype = genotype_from_dict(doc["genotype"])
        ms = float(doc["ms"])
    except (KeyError, TypeError, ValueError, GenotypeError) as exc:
        raise LatencyTableError(f"{table.path}: bad measurement.reference ({exc})") from None
    net = deployment.network(genotype)
    randomize_batchnorm(net)
    return Reference(net, ms)


def check_table(table: LatencyTable, allow_foreign: bool) -> list[str]:
    """Refuse a table measured under other keys than this machine's (unless allowed);
    returns the differences."""
    expected = environment_keys(table_settings(table), table.keys["settings"])
    return table.check_against(expected, allow_foreign)


def predict_models(table: LatencyTable, specs: Sequence[str], measure: bool,
                   on_progress: Callable[[str], None] | None = None) -> list[PredictRow]:
    """Predict each model at the table's settings; with ``measure``, also export and time
    it on the table's runtime with the table's settings."""
    progress = on_progress or (lambda what: None)
    deployment = deployment_from_settings(table.keys["settings"])
    genotypes = [(spec, resolve_genotype(spec)) for spec in specs]
    predictions = [predict(table, deployment, g) for _spec, g in genotypes]
    rows = []
    timer = Timer(table_settings(table)) if measure else None
    reference = reference_network(table, deployment) if measure else None
    try:
        for (spec, genotype), prediction in zip(genotypes, predictions, strict=True):
            row = PredictRow(spec, genotype.name, prediction.total_ms, prediction)
            if timer is not None:
                progress(f"measuring {spec}")
                net = deployment.network(genotype)
                randomize_batchnorm(net)
                t = timer.time_network(net, deployment.input_shape, reference)
                error = 100.0 * (prediction.total_ms - t.median_ms) / t.median_ms
                row = PredictRow(spec, genotype.name, prediction.total_ms, prediction,
                                 t.median_ms, t.p10_ms, t.p90_ms, round(error, 2),
                                 t.raw_median_ms, t.host_speed)
            rows.append(row)
    finally:
        if timer is not None:
            timer.close()
    return rows
