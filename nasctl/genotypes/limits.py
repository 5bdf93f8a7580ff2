"""Size limits of the genotype readers, and the helpers that make text from files safe to
print (short, one line, no control characters).

Real genotypes are tiny (a DARTS cell has 6 nodes and 8 edges; a full supernet cell with
every op kept has 112 edges), so these limits are far above anything a search writes and
only refuse files that would otherwise take minutes or gigabytes to read.
"""

from __future__ import annotations

from typing import Any

MAX_FILE_BYTES = 16 * 1024 * 1024  # a genotype file (or an imported genotype string)
MAX_NODES = 10_000  # nodes in one cell (or layers in one chain)
MAX_EDGES = 50_000  # edges in one cell
MAX_DEPTH = 64  # nesting of JSON arrays/objects (provenance may nest; cells need 4)
MAX_NAME_CHARS = 256  # the genotype's "name"
MAX_INT_DIGITS = 20  # an integer in a genotype file (node ids, slots, seeds, ...)
MAX_RANGE = 10_000  # values in a range(...) of an imported genotype string


def printable(text: str) -> str:
    """``text`` with every non-printable character (ANSI escapes, newlines, bidi controls)
    written as its escape sequence, so a name from a file cannot restyle a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)``, printable and cut to ``limit`` characters: one short line whatever
    the input."""
    try:
        text = printable(repr(value))
    except Exception:  # a user object whose __repr__ fails must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
