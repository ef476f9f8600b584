"""pyHanko's warnings during one validation: the why behind a sub-indication, which its result omits."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Captured(logging.Handler):
    """pyHanko's warnings in this thread only: other threads validate other documents at the same time."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []
        self.errors: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        self.messages.append(record.getMessage()[:300])
        if record.exc_info and record.exc_info[0] is not None:
            self.errors.add(record.exc_info[0].__name__)


@contextmanager
def capturing() -> Iterator[Captured]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("pyhanko", "pyhanko_certvalidator")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
