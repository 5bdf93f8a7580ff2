"""Output helpers shared by the CLI modules: rich console on stdout, one-document JSON."""

from __future__ import annotations

import json
import sys
from typing import Any, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print exactly one JSON document on stdout (for `--json`)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


class EpochProgress:
    """Two rich bars (epochs, steps in the epoch) that a loop's events drive; subclasses
    map their loop's events in ``on_event``."""

    def __init__(self, out: Console = console, bars_off_terminal: bool = True) -> None:
        """``out``: where the bars (on a terminal) and the per-epoch lines go;
        ``bars_off_terminal`` False: off a terminal only the lines (no bar at all, so a
        refusal stays the only line)."""
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                            console=out, disable=not (bars_off_terminal or out.is_terminal))
        self.epochs = self.bar.add_task("epochs", total=None, info="")
        self.steps = self.bar.add_task("steps", total=None, info="")

    def __enter__(self) -> Self:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def on_event(self, event: Any) -> None:
        raise NotImplementedError
