"""A readers-writer gate over the process's PKCS#11 module.

Every call into the module holds the gate shared; re-initialising the module (C_Finalize, then
C_Initialize) holds it alone. C_Finalize while another thread is inside a call crashes SoftHSM
and real HSM libraries alike, so the re-initialisation waits for every call in flight and holds
new ones back (writers go first, or a busy node would never recover). Not re-entrant: a thread
that holds the gate must not take it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModuleGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
