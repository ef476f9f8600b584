"""Text a signer is shown must display as what it is.

Refused: Unicode bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
every other format character (category Cf: zero-width spaces and joiners, soft hyphen, BOM, tags...),
control characters (Cc: tab, carriage return, escape...), surrogates, private-use and unassigned
code points (Cs, Co, Cn), the line and paragraph separators (U+2028, U+2029), and a few letters and
marks that draw nothing (Hangul fillers, U+034F...). A newline is allowed only where the field is
multi-line (summaries, stamp text). The server refuses such text; a device refuses to show it.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Not format characters, yet they render as nothing: a title could look shorter than it is.
INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def unsafe_character(text: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The first character (index, character) that could make ``text`` display as something else."""
    # The common case at C speed: isprintable() is False for every refused category (and for
    # newlines and spaces other than U+0020, which the loop below then judges one by one).
    if text.isprintable() and INVISIBLE.isdisjoint(text):
        return None
    for index, char in enumerate(text):
        if char == "\n" and multiline:
            continue
        if char in BIDI_CONTROLS or char in INVISIBLE or unicodedata.category(char) in _REFUSED_CATEGORIES:
            return index, char
    return None


def describe(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: how to name a refused character without printing it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}{' ' + name if name else ''}"


def escaped(text: str, *, multiline: bool = False) -> str:
    """``text`` with every unsafe character written as ``<U+XXXX>``, safe to print on a terminal."""
    return "".join(f"<U+{ord(c):04X}>" if unsafe_character(c, multiline=multiline) else c for c in text)
