"""The current request's id, for log lines written anywhere while it is served."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")

current: ContextVar[str | None] = ContextVar("kyso_request_id", default=None)


def accept_or_new(incoming: str | None) -> str:
    """The caller's id when it is short and plain (it goes into logs and headers), else a new one."""
    if incoming is not None and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex
