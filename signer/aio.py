"""Running the signer's coroutines (pyHanko's API is async) from the synchronous code that calls them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _ThreadLoop:
    """An event loop kept by one thread: ``asyncio.run`` makes and closes a loop, with its selector and
    self-pipe, at every call (a third of a millisecond, several times per document)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def __del__(self) -> None:  # its thread ended
        self.loop.close()


_local = threading.local()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on this thread's loop (like ``asyncio.run``, never inside a running loop)."""
    loop: _ThreadLoop | None = getattr(_local, "loop", None)
    if loop is None:
        loop = _local.loop = _ThreadLoop()
    return loop.run(coroutine)
