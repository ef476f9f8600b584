"""Redact obvious secrets from log records: the second line of defence after not logging them."""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

_WORDS = r"(?:pin|secret|token|password|passwd|passphrase|authorization|cookie|sad|api[_-]?key|private[_-]?key)"
# A secret word not inside a longer word: "user_pin", "client_secret", "SAD", but not "mapping" or "tokens".
_SECRET_NAME = re.compile(rf"(?<![A-Za-z]){_WORDS}(?![A-Za-z])", re.IGNORECASE)
# Extra fields that carry a document (never logged, whatever their value).
_CONTENT_NAMES = frozenset({"content", "document", "documents", "body", "data", "pdf"})
_PATTERNS = [
    # "Authorization: Bearer x", "Bearer x", "Basic x"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    # key=value, key: value, "key": "value" for secret-looking keys
    (re.compile(rf"""(?ix)
        (["']?[\w-]*?(?<![A-Za-z]){_WORDS}(?![A-Za-z])[\w-]*["']?\s*[:=]\s*)
        ("[^"]*"|'[^']*'|[^\s,;&}}]+)"""), r"\1" + REDACTED),
    # PEM private keys
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), REDACTED),
    # JWTs, wherever they appear
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # A bare random token (kyso's secrets and tokens: 43 base64url characters) without a name
    # around it, as an exception quoting a value carries it: 32 or more characters mixing upper and
    # lower case with a digit, "-" or "_" (ids and hashes in hex never match).
    (re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[0-9_-])"
                r"[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])"), REDACTED),
]

# LogRecord's own attributes: everything else on a record came in through ``extra``.
STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "taskName"}


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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
