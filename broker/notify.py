"""Wake-ups for waiters (long polls, a waiting signer, the signing worker), with a bounded re-check.

A lost or missing notification only delays a waiter until its next re-check, so correctness
never depends on it. One process: :class:`Notifier`. Several worker processes on PostgreSQL:
:class:`PgNotifier` relays every notification through ``NOTIFY kyso_events``, so that a change
made in one worker wakes the waiters of all the others (DESIGN "Scale").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy.engine import make_url

T = TypeVar("T")
CHANNEL = "kyso_events"
log = logging.getLogger("kyso.notify")


class Notifier:
    """In-process wake-ups."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        self._wake_local()

    def _wake_local(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()
            waiting = list(self._async_waiters)
        for loop, event in waiting:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass

    def version(self) -> int:
        return self._version

    def start(self) -> None:
        """Nothing to start in one process."""

    def close(self) -> None:
        """Nothing to release in one process."""

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

    async def wait_async(self, seen: int, timeout: float) -> int:
        """:meth:`wait` for a coroutine: the event loop waits, no thread is held."""
        loop = asyncio.get_running_loop()
        entry = (loop, asyncio.Event())
        with self._cond:
            if self._version != seen:
                return self._version
            self._async_waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                self._async_waiters.discard(entry)
        return self._version

    async def wait_for_async(self, check: Callable[[], T], done: Callable[[T], bool], timeout: float,
                             recheck: float = 1.0) -> T:
        """:meth:`wait_for` for a coroutine: ``check`` runs in the thread pool, the waits hold no
        thread, so that long polls and signers' confirmations do not use up the pool."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.version()
            result = await anyio.to_thread.run_sync(check)
            left = deadline - time.monotonic()
            if done(result) or left <= 0:
                return result
            await self.wait_async(seen, min(left, recheck))


# TCP keepalives: a listen connection whose server vanished without a FIN is noticed in ~20 s.
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3,
              "connect_timeout": 5}


class PgNotifier(Notifier):
    """Wake-ups across processes through PostgreSQL ``LISTEN/NOTIFY``.

    Per process: a listener thread on a dedicated connection that wakes local waiters on every
    other process's ``NOTIFY`` (this one's were woken when sent: waking them again on the echo
    made every waiter re-read the database twice), reconnecting with backoff when the connection drops; and a
    sender thread, so that :meth:`notify` never blocks its caller and a burst becomes one
    ``NOTIFY``. Callers notify after their transaction commits; the payload is empty because
    waiters re-read the database anyway. Threads start on first use (or :meth:`start`).
    """

    def __init__(self, conninfo: str, channel: str = CHANNEL) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._channel = channel
        self._to_send = threading.Event()
        self._dirty = False  # a NOTIFY is owed
        self._closed = threading.Event()
        self._start_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()
        """Set while the listen connection is up (tests and diagnostics)."""
        self.listener_backend_pid: int | None = None
        self._sender_backend_pid: int | None = None

    def notify(self) -> None:
        self._wake_local()  # this process's waiters need not wait for the round trip
        self.start()
        self._dirty = True
        self._to_send.set()

    def version(self) -> int:
        self.start()
        return super().version()

    def start(self) -> None:
        if self._threads or self._closed.is_set():
            return
        with self._start_lock:
            if self._threads or self._closed.is_set():
                return
            # LISTEN before the first waiter checks, so that its first notification is not lost.
            first = self._connect_listener()
            self._threads = [
                threading.Thread(target=self._listen, args=(first,), name="kyso-notify-listen", daemon=True),
                threading.Thread(target=self._send, name="kyso-notify-send", daemon=True)]
            for thread in self._threads:
                thread.start()

    def close(self) -> None:
        self._closed.set()
        self._to_send.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # -- the two threads ------------------------------------------------------------------------

    def _connect(self, *, autocommit: bool) -> Any:
        import psycopg

        return psycopg.connect(self._conninfo, autocommit=autocommit, **_KEEPALIVE)

    def _connect_listener(self) -> Any | None:
        from psycopg import sql

        try:
            conn = self._connect(autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except Exception as exc:  # noqa: BLE001 - the listener thread keeps trying
            log.warning("notifier: cannot listen on PostgreSQL: %s", type(exc).__name__)
            return None
        self.listener_backend_pid = conn.info.backend_pid
        self.listening.set()
        return conn

    def _listen(self, conn: Any | None) -> None:
        backoff = 0.2
        while not self._closed.is_set():
            if conn is None:
                if self._closed.wait(backoff):
                    break
                backoff = min(backoff * 2, 5.0)
                conn = self._connect_listener()
                if conn is not None:
                    backoff = 0.2
                    self._wake_local()  # notifications may have been missed while disconnected
                continue
            try:
                for note in conn.notifies(timeout=0.5):  # returns every 0.5 s to see close()
                    if note.pid != self._sender_backend_pid:
                        self._wake_local()
            except Exception as exc:  # noqa: BLE001 - e.g. the server restarted: reconnect
                log.warning("notifier: listen connection lost: %s", type(exc).__name__)
                self.listening.clear()
                _close_quietly(conn)
                conn = None
        self.listening.clear()
        _close_quietly(conn)

    def _send(self) -> None:
        from psycopg import sql

        statement = sql.SQL("NOTIFY {}").format(sql.Identifier(self._channel))
        conn: Any = None
        backoff = 0.2
        while True:
            self._to_send.wait()
            self._to_send.clear()
            if self._dirty:  # also at close: a CLI that notifies just before it exits is heard
                self._dirty = False
                try:
                    if conn is None:
                        conn = self._connect(autocommit=True)
                        self._sender_backend_pid = conn.info.backend_pid
                    conn.execute(statement)
                    backoff = 0.2
                except Exception as exc:  # noqa: BLE001 - retried; waiters re-check meanwhile
                    log.warning("notifier: cannot send: %s", type(exc).__name__)
                    _close_quietly(conn)
                    conn = None
                    if not self._closed.wait(backoff):
                        self._dirty = True
                        self._to_send.set()
                    backoff = min(backoff * 2, 5.0)
            if self._closed.is_set():
                break
        _close_quietly(conn)


def _close_quietly(conn: Any | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001, S110 - already broken
            pass


def make_notifier(db_url: str) -> Notifier:
    """PostgreSQL gets cross-process wake-ups; SQLite serves one process, which needs none."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        return Notifier()
    return PgNotifier(url.set(drivername="postgresql").render_as_string(hide_password=False))
