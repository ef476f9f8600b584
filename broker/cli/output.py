"""Tables and messages for the terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

# Piped output (scripts, logs) gets wide lines instead of folded cells.
console = Console(width=None if sys.stdout.isatty() else 200)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    t = Table(title=title, show_lines=False)
    for header in headers:
        t.add_column(header)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


def fail(code: str, message: str) -> None:
    """One line on stderr, never wrapped: scripts match on ``error [code]:``."""
    print(f"error [{code}]: {message}", file=sys.stderr)
