"""Tables and messages for the terminal.

Everything printed here is data (names, audit details, error messages that quote input): it is
never read as Rich markup, and control characters (ESC, newlines, bidi overrides) are shown as
visible escapes, so a value can neither crash the printer, restyle the output nor fake a line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

# C0/C1 controls, DEL, and the invisible format characters that reorder or hide text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(value: object) -> str:
    """``value`` as one line of plain text: unsafe characters become visible escapes (``\\x1b``, ``\\n``)."""
    return _UNSAFE.sub(_escape, "" if value is None else str(value))


def safe_lines(text: str) -> str:
    """Several lines of program output (a QR code, PEM): newlines kept, every other control escaped."""
    return "\n".join(safe_text(line) for line in text.split("\n"))


class SafeConsole:
    """A console that prints data as plain text: no markup, no highlighting, no control characters."""

    def __init__(self) -> None:
        # Piped output (scripts, logs) gets wide lines instead of folded cells.
        self._console = Console(width=None if sys.stdout.isatty() else 200)

    def print(self, *objects: object, sep: str = " ", end: str = "\n", multiline: bool = False,
              **_ignored: object) -> None:
        """Print ``objects`` as text; ``multiline`` keeps newlines (for trusted blocks such as a QR code)."""
        clean = safe_lines if multiline else safe_text
        rendered = [o if isinstance(o, Table | Text) else Text(clean(o)) for o in objects]
        self._console.print(*rendered, sep=sep, end=end, markup=False, highlight=False, emoji=False)


console = SafeConsole()


def cell(value: object) -> Text:
    return Text(safe_text(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None) -> None:
    t = Table(title=cell(title) if title else None, show_lines=False)
    for header in headers:
        t.add_column(cell(header))
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    console.print(t)


def fail(code: str, message: str) -> None:
    """One line on stderr, never wrapped: scripts match on ``error [code]:``."""
    print(f"error [{safe_text(code)}]: {safe_text(message)}", file=sys.stderr)
