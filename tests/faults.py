"""Fault injection from outside nasctl: run the real CLI in this process and SIGKILL it
just before its Nth file write (an atomic write or a metrics line).

    python tests/faults.py N COUNT_FILE -- search --out DIR ...

N = 0 kills nothing; COUNT_FILE then receives the number of writes the run made, so a
test can kill a run at every one of its write points in turn.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def main() -> None:
    kill_at, count_file = int(sys.argv[1]), sys.argv[2]
    assert sys.argv[3] == "--"
    from nasctl import atomic, runs
    from nasctl.cli import app

    writes = 0
    real_atomic, real_append = atomic._atomic, runs.RunDir.append_metrics

    def before_write() -> None:
        nonlocal writes
        writes += 1
        if writes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted_atomic(*args: Any, **kwargs: Any) -> Any:
        before_write()
        return real_atomic(*args, **kwargs)

    def counted_append(self: runs.RunDir, record: dict[str, Any]) -> None:
        before_write()
        real_append(self, record)

    atomic._atomic = counted_atomic  # type: ignore[assignment]
    runs.RunDir.append_metrics = counted_append  # type: ignore[method-assign]
    try:
        app(sys.argv[4:], prog_name="nasctl")
    finally:
        with open(count_file, "w") as fh:
            fh.write(str(writes))


if __name__ == "__main__":
    main()
