"""Redact obvious secrets from log records: the second line of defence after not logging them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

REDACTED = "[redacted]"

_WORDS = r"(?:pin|secret|token|password|passwd|passphrase|authorization|cookie|sad|api[_-]?key|private[_-]?key)"
# A secret word not inside a longer word: "user_pin", "client_secret", "SAD", but not "mapping" or "tokens".
_SECRET_NAME = re.compile(rf"(?<![A-Za-z]){_WORDS}(?![A-Za-z])", re.IGNORECASE)
# Extra fields that carry a document (never logged, whatever their value).
_CONTENT_NAMES = frozenset({"content", "document", "documents", "body", "data", "pdf"})
# "Authorization: Bearer x", "Bearer x", "Basic x"
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# A bare random token (kyso's secrets and tokens: 43 base64url characters) without a name around it,
# as an exception quoting a value carries it: 32 or more characters mixing upper and lower case with a
# digit, "-" or "_" (ids and hashes in hex never match). Tried only where a run of such characters starts.
_BARE_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[0-9_-])"
                         r"[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")

# LogRecord's own attributes: everything else on a record came in through ``extra``.
STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "taskName"}


# key=value, key: value, "key": "value": a key (a whole run of word characters, possibly quoted), then
# its value. The key's name is checked apart: one expression that also searched each key for a secret
# word backtracked over every run of word characters, in time quadratic in the run's length.
_KEY = re.compile(r"""(?<![\w-])["']?([\w-]++)["']?\s*+[:=]\s*+""")
_VALUE = re.compile(r""""[^"]*"|'[^']*'|[^\s,;&}]+""")


def _named_values(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    while (key := _KEY.search(text, start)) is not None:
        start = key.end(1)
        if _SECRET_NAME.search(key.group(1)) and (value := _VALUE.match(text, key.end())) is not None:
            yield key.end(), value.end()
            start = value.end()


# PEM private keys: each begin line up to the first end line after it. Searched apart, so that a text
# of begin lines with no end is read once, not once per begin line.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_PEM_END = re.compile(r"-----END [A-Z ]*PRIVATE KEY-----")


def _private_keys(text: str) -> Iterator[tuple[int, int]]:
    done = 0
    while ((begin := _PEM_BEGIN.search(text, done)) is not None
           and (end := _PEM_END.search(text, begin.end())) is not None):
        yield begin.start(), end.end()
        done = end.end()


# JWTs, wherever they appear. After a start that is no JWT, the search goes on past its run of
# base64url characters: a later start in the same run ends where it ends, and fails the same way.
_JWT_START = re.compile(r"\beyJ")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+")
_RUN = re.compile(r"[A-Za-z0-9_-]*+")


def _jwts(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    while (found := _JWT_START.search(text, start)) is not None:
        if (token := _JWT.match(text, found.start())) is None:
            start = max(_RUN.match(text, found.start()).end(), found.end())  # type: ignore[union-attr]
            continue
        yield found.start(), token.end()
        start = token.end()


def _redacted(text: str, spans: Callable[[str], Iterator[tuple[int, int]]]) -> str:
    """``text`` with each of the spans found in it (in order, not overlapping) replaced by REDACTED."""
    parts: list[str] = []
    done = 0
    for start, end in spans(text):
        parts += (text[done:start], REDACTED)
        done = end
    return "".join(parts) + text[done:] if parts else text


def redact_text(text: str) -> str:
    text = _CREDENTIALS.sub(r"\1 " + REDACTED, text)
    for spans in (_named_values, _private_keys, _jwts):
        text = _redacted(text, spans)
    return _BARE_TOKEN.sub(REDACTED, text)


def redact_value(key: str, value: Any) -> Any:
    """``value`` of the extra field ``key``, redacted: containers field by field; any other object
    (an exception, say) as its redacted text, since a formatter would print its ``str`` anyway."""
    if _SECRET_NAME.search(key) or key.lower() in _CONTENT_NAMES:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(key, v) for v in value]
    return redact_text(str(value))


class RedactingFilter(logging.Filter):
    """Rewrites the message and extra fields of every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key, value in list(vars(record).items()):
            if key not in STANDARD_ATTRS:
                setattr(record, key, redact_value(key, value))
        # The traceback ends with the exception's message, which may quote a token: format it
        # now, redacted; formatters use ``exc_text`` when it is set.
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()
