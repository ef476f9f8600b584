"""Tables and messages for the terminal.

Everything printed here is data (names, audit details, error messages that quote input): it is
never read as Rich markup, and control characters (ESC, newlines, bidi overrides) are shown as
visible escapes, so a value can neither crash the printer, restyle the output nor fake a line.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime

import typer
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
        # Piped output (scripts, logs) gets wide lines instead of folded cells, unless COLUMNS says otherwise.
        self._console = Console(width=_width())

    def print(self, *objects: object, sep: str = " ", end: str = "\n", multiline: bool = False,
              **_ignored: object) -> None:
        """Print ``objects`` as text; ``multiline`` keeps newlines (for trusted blocks such as a QR code)."""
        clean = safe_lines if multiline else safe_text
        width = _width()
        if width is not None:
            self._console.width = width
        rendered = [o if isinstance(o, Table | Text) else Text(clean(o)) for o in objects]
        # A message is one line whatever the width (scripts match on it); only tables fold their cells.
        soft_wrap = not any(isinstance(o, Table) for o in objects)
        self._console.print(*rendered, sep=sep, end=end, markup=False, highlight=False, emoji=False,
                            soft_wrap=soft_wrap)


def _width() -> int | None:
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= 40:
        return int(columns)
    return None if sys.stdout.isatty() else 200


console = SafeConsole()

ID_WIDTH = 12
"""Tables show ids shortened to this many characters (any unique prefix is accepted back); ``--json`` has them whole."""


def short_id(value: object) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= ID_WIDTH else text[:ID_WIDTH]


def word(value: object) -> str:
    """An enum value as the CLI spells it when typed: ``chief-accountant``, ``usb-token``."""
    raw = value.value if isinstance(value, enum.Enum) else value
    return str(raw).replace("_", "-")


def _jsonable(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def print_json(data: object) -> None:
    """``--json``: the data whole (full ids), UTF-8, one document on stdout; JSON escapes every control."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def cell(value: object) -> Text:
    return Text(safe_text(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None,
          ids: Sequence[int] = ()) -> None:
    """``ids``: the columns holding ids, shown as their first :data:`ID_WIDTH` characters and never
    folded; other long cells wrap within their column (``fold``), so that the table fits the terminal."""
    t = Table(title=cell(title) if title else None, show_lines=False)
    for index, header in enumerate(headers):
        if index in ids:
            t.add_column(cell(header), no_wrap=True, min_width=ID_WIDTH)
        else:
            t.add_column(cell(header), overflow="fold")
    if ids:
        rows = ([short_id(v) if i in ids else v for i, v in enumerate(row)] for row in rows)
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    console.print(t)


def fail(code: str, message: str) -> None:
    """One line on stderr, never wrapped: scripts match on ``error [code]:``."""
    print(f"error [{safe_text(code)}]: {safe_text(message)}", file=sys.stderr)


JSON_OPTION = typer.Option(False, "--json", help="Print JSON (ids whole) instead of a table.")
