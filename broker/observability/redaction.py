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
]

# LogRecord's own attributes: everything else on a record came in through ``extra``.
STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                     "taskName"}


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    if _SECRET_NAME.search(key) or key.lower() in _CONTENT_NAMES:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


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
        return True
