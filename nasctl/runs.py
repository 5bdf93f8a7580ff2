"""Run folders, shared by search and training: opening one (refusing to overwrite a run
or a folder that is not one, locking it against a second writer, removing what a failed
or SIGTERM-ed run created before it wrote anything useful), config.json, metrics.jsonl,
versioned atomic checkpoints, report.json, and the helpers both loops use (loader
reseeding, the divergence error, versions). One-shot outputs (an export folder) use the
same lock and signal handling through ``open_output``, built in a temporary sibling and
renamed into place whole.

Write order at the end of an epoch: the checkpoint first, then the records describing it
(metrics.jsonl, arch_history.json). A crash between the two leaves a checkpoint whose
epoch the records do not reach yet; on resume, records past the checkpoint's epoch are
dropped, so the two always agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasctl import atomic
from nasctl.errors import CheckpointError, NasctlError, TrainingDiverged

# -- progress events: what search and training report while they run -------------------


@dataclass(frozen=True)
class RunStarted:
    """A run starts after ``epoch`` of ``epochs`` epochs (more than 0: it resumed)."""

    epoch: int
    epochs: int
    steps: int  # per epoch
    world_size: int
    device: str
    run_dir: str

    @property
    def resumed(self) -> bool:
        return self.epoch > 0


@dataclass(frozen=True)
class StepDone:
    """Running means over the epoch so far (search: arch_loss, weight_loss; training:
    loss, top1), every ``log_every`` steps."""

    epoch: int
    epochs: int
    step: int
    steps: int
    values: dict[str, float]


@dataclass(frozen=True)
class EpochDone:
    """An epoch's record (the line metrics.jsonl gets, without bulky fields); ``best``:
    training's best test top-1 so far."""

    epoch: int
    epochs: int
    metrics: dict[str, Any]
    best: bool = False


@dataclass(frozen=True)
class RunWarning:
    epoch: int
    message: str


@dataclass(frozen=True)
class RunDone:
    files: dict[str, str]
    notes: list[str] = field(default_factory=list)


RunEvent = RunStarted | StepDone | EpochDone | RunWarning | RunDone
OnEvent = Callable[[RunEvent], None]

FORMAT = "nasctl-checkpoint"
VERSION = 1
LOCK = ".lock"


class RunDir:
    """A run's output folder. Every file it writes survives a crash intact."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock: Any = None

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return self.file(name).exists()

    def write_config(self, config: dict[str, Any]) -> Path:
        return atomic.write_json(self.file("config.json"), config)

    def read_config(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.file("config.json").read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.file('config.json')}: unreadable ({exc})") from None
        if not isinstance(doc, dict):
            raise CheckpointError(f"{self.file('config.json')}: not a run config")
        return doc

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line and fsync it, so a crash loses at most the line in flight."""
        with open(self.file("metrics.jsonl"), "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """The complete records (a line cut short by a crash is not one)."""
        path = self.file("metrics.jsonl")
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                break
        return records

    def truncate_metrics(self, epoch: int) -> None:
        """Keep the records of epochs up to ``epoch`` (drops lines written after the
        checkpoint a resumed run restarts from). A run with no records yet writes nothing:
        a folder holding only an empty metrics file would not be recognised as its run."""
        if not self.file("metrics.jsonl").exists():
            return
        records = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= epoch]
        atomic.write_text(
            self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records)
        )

    def save_checkpoint(self, name: str, kind: str, state: dict[str, Any]) -> Path:
        return atomic.torch_save(self.file(name), {"format": FORMAT, "version": VERSION,
                                                   "kind": kind, **state})

    def write_report(self, report: dict[str, Any]) -> Path:
        return atomic.write_json(self.file("report.json"), report)

    # -- locking -----------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's lock; a second nasctl writing here fails in one line. The
        lock dies with its process, so a killed run never blocks its ``--resume``."""
        self._lock = take_lock(self.file(LOCK), self.path)

    def unlock(self) -> None:
        release_lock(self._lock, self.file(LOCK))
        self._lock = None


def take_lock(lock_file: Path, folder: Path) -> Any:
    """An exclusive advisory lock on ``lock_file`` (which records our pid), held until
    ``release_lock``; another holder is one line naming ``folder`` and its pid."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks
        return None
    fh = open(lock_file, "a+")  # noqa: SIM115 - held until release_lock
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise NasctlError(f"{folder} is in use by another nasctl run (pid {holder}); "
                          "wait for it or choose another --out") from None
    fh.truncate(0)
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def release_lock(handle: Any, lock_file: Path) -> None:
    if handle is not None:
        with contextlib.suppress(OSError):
            lock_file.unlink()
        handle.close()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler, a container stopping) handled like Ctrl-C while a
    command writes: the same cleanup, the same message and exit code."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_out(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise NasctlError(f"--out {root}: exists and is not a folder")


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], what: str,
                owns: Callable[[Path], bool]) -> Iterator[Path]:
    """A folder a one-shot command writes whole. Refuses a file, or a non-empty folder
    that ``owns`` says is not this command's output; locks the folder; yields a temporary
    sibling to build in, which replaces the folder only when the block succeeds. On any
    failure (an error, Ctrl-C, SIGTERM, a full disk) the folder is as it was."""
    root = Path(path).absolute()  # "." or "" name the current folder: give it its name
    _check_out(root)
    if root.is_dir() and any(root.iterdir()) and not owns(root):
        raise NasctlError(f"--out {root}: a non-empty folder that is not a nasctl {what}; "
                          "choose another --out (nothing there is replaced)")
    root.parent.mkdir(parents=True, exist_ok=True)
    lock_file = root.parent / f".{root.name}.lock"
    with sigterm_as_interrupt():
        handle = take_lock(lock_file, root)
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp",
                                         dir=root.parent))
            try:
                os.chmod(work, 0o777 & ~atomic.UMASK)
                yield work
                _swap_in(work, root)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        finally:
            release_lock(handle, lock_file)


def check_output_file(path: str | os.PathLike[str],
                      inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """A file a command is about to write (atomically): refused when it is a folder, one
    of the command's inputs, or in a folder that does not exist (a typo would create it)."""
    out = Path(path)
    if not os.fspath(path) or out.is_dir():
        raise NasctlError(f"--out {out}: is a folder; name the file to write")
    if not out.parent.is_dir():
        raise NasctlError(f"--out {out}: the folder {out.parent} does not exist")
    for given in inputs:
        source = Path(given)
        if out.exists() and source.exists() and os.path.samefile(out, source):
            raise NasctlError(f"--out {out}: is the input {given}; write to another file")
    return out


def _swap_in(work: Path, root: Path) -> None:
    """Put the finished ``work`` folder at ``root``; an earlier output there goes."""
    if not root.exists():
        os.rename(work, root)
        return
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    os.rename(root, old)
    os.rename(work, root)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def open_run(path: str | os.PathLike[str], resume: bool, checkpoint: str, what: str,
             enabled: bool = True) -> Iterator[RunDir | None]:
    """The run folder of a new run (refused when it already holds one) or of a resumed
    one, locked while the run writes. If the run fails before ``checkpoint`` exists, what
    it wrote is removed (and the folder, if it created it). Only the main process writes:
    with ``enabled`` False this yields None."""
    if not enabled:
        yield None
        return
    root = Path(path)
    _check_out(root)
    created = not root.exists()
    started = (root / checkpoint).exists() or (root / "config.json").exists()
    if started and not resume:
        held = checkpoint if (root / checkpoint).exists() else "config.json"
        raise NasctlError(f"{root} already holds a {what} ({held}); pass --resume to continue "
                          "it or choose another --out")
    if resume and not started:
        raise CheckpointError(f"--resume: nothing to resume in {root} (no {checkpoint} or "
                              "config.json)")
    before = set(os.listdir(root)) if root.exists() else set()
    # what a run killed before it recorded its config leaves: its lock, empty records, the
    # temporary file of an atomic write and, beside its lock, the genotype it was given;
    # anything else is someone's
    ours = (LOCK, "metrics.jsonl", *(("genotype.json",) if LOCK in before else ()))
    debris = {n for n in before if n in ours or (n.startswith(".") and n.endswith(".tmp"))}
    if before - debris and not started:
        raise NasctlError(f"--out {root}: a non-empty folder that is not a {what} (no "
                          f"{checkpoint} or config.json); choose another --out")
    run = RunDir(root)
    with sigterm_as_interrupt():
        run.lock()
        try:
            yield run
        except BaseException:
            if not (root / checkpoint).exists():
                _remove_new(root, before, created)
            raise
        finally:
            run.unlock()


def _remove_new(root: Path, before: set[str], created: bool) -> None:
    """Remove the files a failed run added to ``root`` (and ``root`` if it made it)."""
    with contextlib.suppress(OSError):
        for name in set(os.listdir(root)) - before:
            target = root / name
            if target.is_file() or target.is_symlink():
                target.unlink()
        if created and not any(root.iterdir()):
            root.rmdir()


def check_checkpoint(state: dict[str, Any], path: Path, kind: str) -> dict[str, Any]:
    """``state`` if it is a nasctl checkpoint of ``kind`` this version reads."""
    if state.get("format") != FORMAT or state.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} version {VERSION} file (format "
                              f"{state.get('format')!r}, version {state.get('version')!r})")
    if state.get("kind", kind) != kind:
        raise CheckpointError(f"{path}: a {state.get('kind')} checkpoint, not a {kind} one")
    return state


def reseed_loaders(loaders: Iterable[Any], seed: int, epoch: int) -> None:
    """Make each loader's shuffle order a function of (seed, epoch, its position), so a
    resumed run reads the batches the uninterrupted one would have read."""
    from nasctl.data import set_loader_epoch

    for k, loader in enumerate(loaders):
        set_loader_epoch(loader, epoch)
        if loader.generator is not None:
            loader.generator.manual_seed(seed * 100_003 + epoch * 2 + k)


def diverged(what: str, epoch: int, checkpoint: Path | None, hint: str) -> TrainingDiverged:
    """The one divergence error: what became non-finite, and what was kept."""
    kept = (f"the last good checkpoint is {checkpoint}" if checkpoint is not None
            and checkpoint.exists() else "no checkpoint was written yet")
    return TrainingDiverged(f"epoch {epoch}: {what}; {kept} (try {hint})")


def gather_objects(obj: Any, info: Any) -> list[Any]:
    """``obj`` from every rank (a collective under torchrun), e.g. each rank's RNG state."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def versions() -> dict[str, Any]:
    """The versions a run records (config.json, checkpoints)."""
    import torch

    from nasctl import __version__

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"nasctl": __version__, "torch": str(torch.__version__),
            "python": platform.python_version(), "cuda": torch.version.cuda, "cudnn": cudnn}


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
