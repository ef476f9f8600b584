"""Log lines: one JSON object per line (or plain text for a terminal), each with the request id.

``configure_logging`` is called once by the CLI or the server; ``KYSO_LOG_FORMAT`` (json|text)
overrides the caller's default. Every handler carries :class:`RedactingFilter`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import IO, Any

from broker.observability import request_id
from broker.observability.redaction import STANDARD_ATTRS, RedactingFilter, redact_text

FORMATS = ("json", "text")
ENV_FORMAT = "KYSO_LOG_FORMAT"
ENV_LEVEL = "KYSO_LOG_LEVEL"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.current.get()
        return True


# uvicorn's copy of the message with terminal colours.
_DROPPED = frozenset({"request_id", "color_message"})


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRS and k not in _DROPPED}


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback, redacted (the filter normally did it already: this is the backstop)."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return redact_text(record.exc_text) if record.exc_text else None


# Controls (newlines first), ESC and the invisible characters that reorder text: in a text line
# they would start a forged line or drive the terminal, so they are written as escapes.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {10: "\\n", 13: "\\r", 9: "\\t"}.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(value: object) -> str:
    return _UNSAFE.sub(_escape, str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        exception = _exception(self, record)
        if exception:
            line["exception"] = exception
        if record.stack_info:
            line["stack"] = redact_text(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=lambda v: redact_text(str(v)))


class TextFormatter(logging.Formatter):
    """One line per record; a traceback follows on lines of its own, each indented with ``  | ``,
    so that nothing a message or an exception carries can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{one_line(k)}={one_line(v)}" for k, v in _extras(record).items())
        rid = getattr(record, "request_id", None)
        text = f"{self.formatTime(record)} {record.levelname:<7} {one_line(record.name)}: {one_line(record.getMessage())}"
        text += f" [{one_line(rid)}]" if rid else ""
        text += f" {extras}" if extras else ""
        for block in (_exception(self, record), record.stack_info and redact_text(record.stack_info)):
            if block:
                text += "".join(f"\n  | {one_line(line)}" for line in block.splitlines())
        return text


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with the format, the request id and the redaction filter."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    return handler


def configure_logging(log_format: str | None = None, *, default: str = "json", level: str | None = None,
                      stream: IO[str] | None = None) -> str:
    """Send every logger (uvicorn's included) through one redacting handler on the root; return the format.

    Run uvicorn with ``log_config=None, access_log=False``: otherwise it installs its own handlers,
    and kyso's middleware already writes one line per request with its route and request id.
    """
    chosen = (log_format or os.environ.get(ENV_FORMAT) or default).lower()
    handler = make_handler(chosen, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel((level or os.environ.get(ENV_LEVEL) or "INFO").upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Per-call lines of the HTTP clients (readiness probes, TSA, webhooks) add noise and URLs.
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return chosen
