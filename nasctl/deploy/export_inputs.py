"""The images an export runs on, resolved from what the user has: parity inputs (the
model's own test split when it is here, otherwise images of the right shape, with the
reason accuracy was not measured) and int8 calibration images (never made up: without
them int8 is refused in one line naming ``--calib-data``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasctl.errors import DataError

if TYPE_CHECKING:
    import numpy as np

    from nasctl.export.precision import Calibration
    from nasctl.export.source import ModelSource

PARITY_SAMPLES = 200  # held-out images for parity when --samples is not given
CALIB_IMAGES = 256  # int8 calibration images when --calib-images is not given
STAND_IN = "digits"  # embedded, offline: the images of the right shape any model can take


@dataclass(frozen=True)
class ParityData:
    """What parity ran on, as report.json records it."""

    source: str  # dataset name or image folder
    split: str
    images: int
    labelled: bool
    accuracy_judged: bool
    accuracy_not_measured: str | None = None  # why, when the model's accuracy was not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ParityData:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})


@dataclass
class ParityInputs:
    data: ParityData
    images: np.ndarray
    labels: np.ndarray | None
    stand_in: bool  # the model's dataset is not here: images of the right shape instead


def parity_inputs(source: ModelSource, requested: str | None, data_dir: str | None,
                  count: int | None) -> ParityInputs:
    """Parity images: ``requested`` (a dataset name or image folder), else the trained
    model's own test split, else (a random model, or the model's dataset needs a
    ``--data-dir`` that was not given) the embedded digits resized to the input size."""
    from nasctl.deploy.inputs import sample_labelled_images

    wanted = requested or (source.dataset if source.trained else STAND_IN)
    stand_in = (requested is None and wanted != STAND_IN and data_dir is None)
    used = STAND_IN if stand_in else wanted
    images, labels = sample_labelled_images(
        PARITY_SAMPLES if count is None else count, source.input_size, source.mean,
        source.std, source=used, split="test", data_dir=data_dir, up_to=count is None,
        flag="--samples", source_flag="--parity-data")
    judged = source.trained and used == source.dataset
    if stand_in:
        why = (f"no {wanted} test images here (pass --data-dir): parity ran on {used} test "
               f"images resized to {source.input_size}x{source.input_size}")
        labels = None  # another dataset's labels say nothing about this model
    elif not source.trained:
        why = "random weights"
    elif labels is None:
        why = f"{used} is an image folder: its class indices are not the model's"
    elif not judged:
        why = f"{used} is not the dataset the model was trained on ({source.dataset})"
    else:
        why = None
    data = ParityData(source=used, split="test", images=len(images),
                      labelled=labels is not None, accuracy_judged=judged,
                      accuracy_not_measured=why)
    return ParityInputs(data, images, labels, stand_in)


def calibration_source(calib_data: str | None, parity: ParityInputs) -> str:
    """Where int8 calibration images come from: ``--calib-data``, else the parity dataset's
    train split (or its image folder) unless parity ran on stand-in images, which are no
    calibration set."""
    if calib_data is not None:
        return calib_data
    if parity.stand_in:
        raise DataError("int8 needs calibration images like the deployment's: pass "
                        "--calib-data (an image folder, or a dataset name with --data-dir)")
    return parity.data.source


def calibration_for(source: ModelSource, data: str, count: int | None, method: str,
                    data_dir: str | None, dynamic_batch: bool) -> Calibration:
    """Up to ``CALIB_IMAGES`` (or exactly ``count``) real calibration images from ``data``
    (a dataset's train split or an image folder), normalized as the model expects."""
    from nasctl.deploy.inputs import sample_images
    from nasctl.export.precision import Calibration

    images = sample_images(CALIB_IMAGES if count is None else count, source.input_size,
                           source.mean, source.std, source=data, split="train",
                           data_dir=data_dir, up_to=count is None, flag="--calib-images",
                           source_flag="--calib-data")
    where = data if Path(data).is_dir() else f"{data} (train split)"
    return Calibration(images=images, source=where, method=method,
                       batch=8 if dynamic_batch else 1)
