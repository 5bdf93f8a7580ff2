"""Numeric parity between a reference output (PyTorch eager, fp32) and a runtime's output.

fp32 is judged element by element: an element passes when ``|out - ref| <= atol + rtol *
|ref|`` (numpy's allclose rule, the Polygraphy default style), and the check passes when
every element does and top-1 agreement reaches ``min_top1``. fp16 and int8 change every
logit a little by design, so they are judged as a deployment is: top-1 agreement with the
fp32 reference and, on labelled images of a trained model, the accuracy lost against
fp32. Errors are also reported relative to the reference's RMS, to read them against the
output scale. The presets are a column of the precision table (nasctl.export.precision),
each field overridable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_top1: float
    elementwise: bool = True  # judge atol/rtol per element (fp32), else report only
    max_accuracy_drop: float | None = None  # accuracy lost against fp32, as a fraction

    def override(self, atol: float | None = None, rtol: float | None = None,
                 min_top1: float | None = None) -> Tolerance:
        """Given atol/rtol are always judged element by element."""
        return replace(
            self,
            atol=self.atol if atol is None else atol,
            rtol=self.rtol if rtol is None else rtol,
            min_top1=self.min_top1 if min_top1 is None else min_top1,
            elementwise=self.elementwise or atol is not None or rtol is not None,
        )


def tolerance_for(precision: str, atol: float | None = None, rtol: float | None = None,
                  min_top1: float | None = None) -> Tolerance:
    """The precision's preset (nasctl.export.precision's table), with the given fields."""
    from nasctl.export.precision import precision_row

    return precision_row(precision).tolerance.override(atol, rtol, min_top1)


@dataclass
class ParityResult:
    passed: bool
    samples: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    p99_rel: float
    top1_agreement: float
    violations: int
    reference_rms: float  # the output scale, to read the absolute errors against
    max_abs_over_rms: float
    p99_abs_over_rms: float
    accuracy: float | None  # against the labels, when there are labels
    reference_accuracy: float | None  # the fp32 reference's
    accuracy_delta: float | None  # accuracy - reference_accuracy
    tolerance: dict[str, Any]
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_outputs(reference: np.ndarray, output: np.ndarray, tolerance: Tolerance,
                    precision: str = "fp32", labels: np.ndarray | None = None,
                    judge_accuracy: bool = True) -> ParityResult:
    """Compare logits [N, classes] (or any [N, ...] arrays, top-1 over the last axis).
    With ``labels``, both accuracies are reported; the accuracy drop is judged only when
    ``judge_accuracy`` (a trained model: a random one's accuracy means nothing)."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    abs_err = np.abs(out - ref)
    # relative to the reference magnitude, floored so near-zero logits do not explode
    rel_err = abs_err / np.maximum(np.abs(ref), 1e-6)
    finite = bool(np.isfinite(out).all())
    violations = int(np.count_nonzero(~(abs_err <= tolerance.atol + tolerance.rtol * np.abs(ref))))
    flat_ref = ref.reshape(ref.shape[0], -1)
    flat_out = out.reshape(out.shape[0], -1)
    top1 = float(np.mean(flat_ref.argmax(axis=1) == flat_out.argmax(axis=1)))
    rms = float(np.sqrt(np.mean(ref**2)))
    accuracy = reference_accuracy = delta = None
    if labels is not None:
        accuracy = float(np.mean(flat_out.argmax(axis=1) == labels))
        reference_accuracy = float(np.mean(flat_ref.argmax(axis=1) == labels))
        delta = accuracy - reference_accuracy
    passed = finite and top1 >= tolerance.min_top1
    if tolerance.elementwise:
        passed = passed and violations == 0
    if judge_accuracy and delta is not None and tolerance.max_accuracy_drop is not None:
        passed = passed and -delta <= tolerance.max_accuracy_drop + 1e-12
    return ParityResult(
        passed=passed,
        samples=int(ref.shape[0]),
        max_abs=float(abs_err.max()), mean_abs=float(abs_err.mean()),
        p99_abs=float(np.percentile(abs_err, 99)),
        max_rel=float(rel_err.max()), mean_rel=float(rel_err.mean()),
        p99_rel=float(np.percentile(rel_err, 99)),
        top1_agreement=top1, violations=violations,
        reference_rms=rms,
        max_abs_over_rms=float(abs_err.max() / max(rms, 1e-12)),
        p99_abs_over_rms=float(np.percentile(abs_err, 99) / max(rms, 1e-12)),
        accuracy=accuracy, reference_accuracy=reference_accuracy, accuracy_delta=delta,
        tolerance=asdict(tolerance), precision=precision,
    )
