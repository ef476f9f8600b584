"""A bounded pool of PKCS#11 sessions, reused last in, first out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class SessionPool:
    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[Any] = []
        self._open = 0
        self._cond = threading.Condition()

    def checkout(self, open_session: Callable[[], Any]) -> Any:
        """An idle session, a new one while fewer than ``size`` are open, else wait for one."""
        with self._cond:
            while not self._idle and self._open >= self._size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return open_session()
        except BaseException:
            self._forget_one()
            raise

    def checkin(self, session: Any) -> None:
        with self._cond:
            self._idle.append(session)
            self._cond.notify()

    def discard(self, session: Any, close: Callable[[Any], None]) -> None:
        """Close a session that failed, freeing its place."""
        try:
            close(session)
        finally:
            self._forget_one()

    def take_all(self) -> list[Any]:
        """Empty the pool and return its idle sessions; only when none is checked out."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._open = 0
            self._cond.notify_all()
        return idle

    def _forget_one(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()
