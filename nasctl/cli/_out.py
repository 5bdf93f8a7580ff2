"""Output helpers shared by the CLI modules: rich console on stdout, one-document JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Print exactly one JSON document on stdout (for `--json`)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
