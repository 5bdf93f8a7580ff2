"""The export report as typed records: every part of report.json is a dataclass with
``to_dict`` (the report.json layout) and ``from_dict`` (read back), so the CLI and the
pipeline read a report by attribute, never by key."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nasctl.deploy.artifacts import ArtifactRecord, ExportSettings
from nasctl.deploy.bench import HostInfo, Latency
from nasctl.deploy.export_inputs import ParityData
from nasctl.deploy.onnx_count import OnnxCounts
from nasctl.deploy.parity import ParityResult
from nasctl.deploy.runtimes import DEFAULT_RUNTIMES
from nasctl.deploy.validation import Check as CardCheck
from nasctl.deploy.validation import ValidationRow
from nasctl.export.onnx_export import OnnxExport
from nasctl.export.source import ModelInfo


def _known(cls: type, doc: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``doc`` that are fields of the dataclass ``cls``."""
    return {f.name: doc[f.name] for f in fields(cls) if f.name in doc}


@dataclass
class ExportOptions:
    out_dir: str
    onnx: bool = True
    trt: bool = False
    precisions: tuple[str, ...] = ("fp32",)
    settings: ExportSettings = field(default_factory=ExportSettings)
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    threads: int | None = None
    parity_samples: int | None = None  # None: up to PARITY_SAMPLES
    parity_data: str | None = None  # None: the model's dataset when here, else digits
    data_dir: str | None = None
    atol: float | None = None
    rtol: float | None = None
    min_top1: float | None = None
    latency_batch: int = 1
    latency_runs: int = 50
    warmup: int = 5
    calib_data: str | None = None  # None: the train split of the parity dataset
    calib_images: int | None = None  # None: up to CALIB_IMAGES
    calib_method: str = "minmax"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ExportOptions:
        known = _known(cls, doc)
        known["settings"] = ExportSettings(**_known(ExportSettings, doc.get("settings", {})))
        for name in ("precisions", "runtimes"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)


@dataclass
class Check:
    """One cell of a row: ``pass``, ``failed`` (with ``error``), ``unavailable`` or
    ``skipped`` (with ``reason``), or ``reference`` (the torch fp32 row)."""

    status: str
    reason: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            doc.update(value.to_dict() if hasattr(value, "to_dict") else {f.name: value})
        return doc

    @classmethod
    def nested(cls) -> dict[str, type]:
        """The field whose record ``to_dict`` spreads into the cell, and its type."""
        return {}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Any:
        nested = cls.nested()
        known = {k: v for k, v in _known(cls, doc).items() if k not in nested}
        for name, kind in nested.items():
            if all(f.name in doc for f in fields(kind)):
                known[name] = kind(**_known(kind, doc))
        return cls(**known)


@dataclass
class ExportedCheck(Check):
    path: str | None = None


@dataclass
class ParityCheck(Check):
    result: ParityResult | None = None

    @classmethod
    def nested(cls) -> dict[str, type]:
        return {"result": ParityResult}


@dataclass
class LatencyCheck(Check):
    stats: Latency | None = None
    x_floor: float | None = None  # CPU rows: times the compute floor

    @classmethod
    def nested(cls) -> dict[str, type]:
        return {"stats": Latency}


@dataclass
class RuntimeRow:
    runtime: str
    precision: str
    device: str | None
    exported: ExportedCheck
    parity: ParityCheck
    latency: LatencyCheck
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "precision": self.precision, "device": self.device,
                "settings": self.settings, "exported": self.exported.to_dict(),
                "parity": self.parity.to_dict(), "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RuntimeRow:
        return cls(doc["runtime"], doc["precision"], doc.get("device"),
                   ExportedCheck.from_dict(doc["exported"]), ParityCheck.from_dict(doc["parity"]),
                   LatencyCheck.from_dict(doc["latency"]), doc.get("settings") or {})

    @property
    def failed(self) -> bool:
        return "failed" in (self.exported.status, self.parity.status, self.latency.status)


@dataclass
class TorchCounts:
    """Params (without the auxiliary head, and the head's own) and MACs of the torch model."""

    params: int
    params_aux_head: int
    macs_convfc: int
    macs_all: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CountAgreement:
    """One figure counted on the torch model and on the ONNX graph: they must be equal."""

    figure: str
    torch: int
    onnx: int

    @property
    def status(self) -> str:
        return "pass" if self.torch == self.onnx else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CountAgreement:
        return cls(**_known(cls, doc))


@dataclass
class PaperComparison:
    """The counts against the genotype's paper card: ``no-reference`` (no card),
    ``not-comparable`` (built at other settings than the card's), else the worst status of
    the torch and ONNX rows."""

    status: str
    card: str | None = None
    note: str | None = None
    torch: ValidationRow | None = None
    onnx: ValidationRow | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"status": self.status}
        for name in ("card", "note"):
            if getattr(self, name) is not None:
                doc[name] = getattr(self, name)
        for name in ("torch", "onnx"):
            row = getattr(self, name)
            if row is not None:
                doc[name] = row.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PaperComparison:
        def row(d: dict[str, Any] | None) -> ValidationRow | None:
            if d is None:
                return None
            return ValidationRow(**{**_known(ValidationRow, d),
                                    "checks": [CardCheck(**c) for c in d.get("checks", [])]})

        return cls(doc["status"], doc.get("card"), doc.get("note"), row(doc.get("torch")),
                   row(doc.get("onnx")))


@dataclass
class CountValidation:
    """Params and MACs on the torch model and on the fp32 ONNX graph (None when there is
    none), their agreement, and the paper card comparison."""

    torch: TorchCounts
    onnx: OnnxCounts | None
    agreement: list[CountAgreement]
    paper: PaperComparison

    @property
    def passed(self) -> bool:
        return (all(c.status == "pass" for c in self.agreement)
                and self.paper.status != "fail")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"torch": self.torch.to_dict()}
        if self.onnx is not None:
            doc["onnx"] = self.onnx.to_dict()
        doc["agreement"] = [c.to_dict() for c in self.agreement]
        doc["paper"] = self.paper.to_dict()
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CountValidation:
        onnx = doc.get("onnx")
        return cls(TorchCounts(**doc["torch"]),
                   None if onnx is None else OnnxCounts(**onnx),
                   [CountAgreement.from_dict(c) for c in doc.get("agreement", [])],
                   PaperComparison.from_dict(doc["paper"]))


@dataclass
class ComputeFloor:
    """Batch-1 CPU floor: conv+FC MACs over this CPU's measured fp32 multiply-add peak."""

    peak_macs_per_s: int
    threads: int | None
    macs: int
    floor_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ComputeFloor:
        return cls(**_known(cls, doc))


@dataclass
class OnnxInfo:
    """The fp32 export: ``skipped`` (no ONNX asked for), ``failed`` (with ``error``) or
    ``pass`` with what the exporter did."""

    status: str
    error: str | None = None
    export: OnnxExport | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.status == "skipped":
            return {"status": self.status}
        return {"status": self.status, "error": self.error,
                **(self.export.to_dict() if self.export else {})}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> OnnxInfo:
        export = (OnnxExport(**_known(OnnxExport, doc))
                  if all(f.name in doc for f in fields(OnnxExport) if f.name != "warnings")
                  else None)
        return cls(doc["status"], doc.get("error"), export)


@dataclass
class ExportReport:
    model: ModelInfo
    options: ExportOptions
    host: HostInfo
    onnx: OnnxInfo  # the fp32 export: exporter, opset, op counts
    artifacts: list[ArtifactRecord]
    runtimes: list[RuntimeRow]
    validation: CountValidation
    compute_floor: ComputeFloor
    parity_data: ParityData
    notes: list[str]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
            doc[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ExportReport:
        """A report.json read back (KeyError/TypeError when it is not an export report)."""
        return cls(
            model=ModelInfo.from_dict(doc["model"]),
            options=ExportOptions.from_dict(doc["options"]),
            host=HostInfo.from_dict(doc["host"]), onnx=OnnxInfo.from_dict(doc["onnx"]),
            artifacts=[ArtifactRecord(**a) for a in doc["artifacts"]],
            runtimes=[RuntimeRow.from_dict(r) for r in doc["runtimes"]],
            validation=CountValidation.from_dict(doc["validation"]),
            compute_floor=ComputeFloor.from_dict(doc["compute_floor"]),
            parity_data=ParityData.from_dict(doc["parity_data"]), notes=list(doc["notes"]),
            passed=bool(doc["passed"]))
