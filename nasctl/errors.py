"""Typed errors. The CLI prints any `NasctlError` as one line and exits 2."""


class NasctlError(Exception):
    """Base class for errors a user can act on (bad input, missing files or backends)."""


class GenotypeError(NasctlError):
    """A genotype file or string is malformed or describes an impossible cell."""


class ConversionError(NasctlError):
    """A genotype cannot be expressed in the requested format."""


class DataError(NasctlError):
    """A dataset is missing, malformed or does not match the model."""


class CheckpointError(NasctlError):
    """A checkpoint is missing, corrupt or incompatible."""


class BackendUnavailable(NasctlError):
    """A runtime or export backend (TensorRT, CUDA, ...) is not installed or usable here."""


class TrainingDiverged(NasctlError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class RunInterrupted(NasctlError):
    """A run stopped by Ctrl-C (SIGINT) or SIGTERM; the CLI exits 130 and says how to
    resume it."""

    def __init__(self, run_dir: object, command: str, epoch: int, resumable: bool) -> None:
        self.run_dir, self.command, self.epoch, self.resumable = run_dir, command, epoch, resumable
        kept = (f"resume with: nasctl {command} --resume --out {run_dir}" if resumable
                else "it stopped before its first checkpoint, so nothing was kept")
        super().__init__(f"interrupted in epoch {epoch}; {kept}")
