"""Wake-ups for waiters (long polls, a waiting signer): in process now, a bounded re-check always.

A lost or missing notification only delays a waiter until its next re-check, so correctness
never depends on it (several workers get PostgreSQL LISTEN/NOTIFY on top of this).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Notifier:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def version(self) -> int:
        return self._version

    def wait(self, seen: int, timeout: float) -> int:
        """Block until a notification after ``seen`` or ``timeout``; return the current version."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._version == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._version

    def wait_for(self, check: Callable[[], T], done: Callable[[T], bool], timeout: float, recheck: float = 1.0) -> T:
        """Call ``check`` until ``done(result)`` or ``timeout``: woken by notifications, and
        re-checking every ``recheck`` seconds anyway so that a lost notification only delays."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.version()
            result = check()
            left = deadline - time.monotonic()
            if done(result) or left <= 0:
                return result
            self.wait(seen, min(left, recheck))
