"""Wake-ups for waiters (long polls, a waiting signer, the signing worker), with a bounded re-check.

A lost or missing notification only delays a waiter until its next re-check, so correctness
never depends on it. One process: :class:`Notifier`. Several worker processes on PostgreSQL:
:class:`PgNotifier` relays every notification through ``NOTIFY kyso_events``, so that a change
made in one worker wakes the waiters of all the others.
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
_MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes
log = logging.getLogger("kyso.notify")


def request_topic(request_id: str) -> str:
    """Waiters on one signing request (a long poll on its state, an ``authorize`` awaiting the signer)."""
    return f"r:{request_id}"


def user_topic(user_id: str) -> str:
    """Waiters on one signer's pending list (a phone, the approval page)."""
    return f"{USER_CHANNEL}:{user_id}"


USER_CHANNEL = "u"
"""Every signer's pending list: a thread serving all signers (the sandbox's phones) waits on it."""
WORK_TOPIC = "work"
"""The signing worker's: a request approved for it to finish, a change that queued webhooks."""
RECHECK_SECONDS = 5.0
"""How often a coroutine waiting on one request's topic (a REST long poll, CSC ``authorize``)
re-checks without a notification. Every change to a request that its waiters wait for names it,
across workers through PostgreSQL, and a wait also ends when its result changes by itself (an
expiry); this re-check only bounds how late a lost notification is seen (a listener reconnecting, a
CLI beside a server on SQLite). Each re-check is a query: at one a second, 200 idle long polls took
the server a seventh of a core."""
LIST_RECHECK_SECONDS = 1.0
"""A signer's pending list (a phone, the approval pages) re-checks every second: a decision names
the request, not its signer (each decision waking the signer's lists cost more, under load, than
these re-checks), so a list on another device sees it at its next re-check."""


def _channels(topics: frozenset[str]) -> set[str]:
    return {topic.partition(":")[0] for topic in topics}


class Notifier:
    """In-process wake-ups. A notification names topics (:func:`request_topic`, :func:`user_topic`)
    or none (everyone); a coroutine waiting on a topic sleeps through the others' notifications,
    so that a busy server does not re-check every long poll at every change. A thread waits with
    :meth:`wait` on a channel: :data:`WORK_TOPIC` (the signing worker), :data:`USER_CHANNEL` (any
    signer's list), or every notification."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0
        self._broadcasts = 0
        self._channel_versions: dict[str, int] = {}
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event, str | None]] = set()
        self._stopping = False

    def notify(self, *topics: str) -> None:
        self._wake_local(frozenset(topics))

    def _wake_local(self, topics: frozenset[str] = frozenset()) -> None:
        with self._cond:
            self._version += 1
            if topics:
                for channel in _channels(topics):
                    self._channel_versions[channel] = self._channel_versions.get(channel, 0) + 1
            else:
                self._broadcasts += 1
            self._cond.notify_all()
            waiting = [w for w in self._async_waiters if not topics or w[2] is None or w[2] in topics]
        for loop, event, _ in waiting:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass

    def version(self, channel: str | None = None) -> int:
        """Notifications so far: all of them, or those of ``channel`` (those naming no topic included)."""
        if channel is None:
            return self._version
        return self._channel_versions.get(channel, 0) + self._broadcasts

    def stop_waiting(self) -> None:
        """The server is stopping: every coroutine waiting (:meth:`wait_for_async`: long polls, a
        signer's confirmation awaited) checks once more and answers now, and those starting from now
        on do not wait, so that they end within the shutdown's grace period. Threads waiting with
        :meth:`wait` are woken once and wait on (the signing worker stops on its own). Safe to call
        from a signal handler."""
        self._stopping = True
        self._wake_local()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        """Nothing to start in one process."""

    def take_work_locally(self, idle: Callable[[], bool] | None) -> None:
        """``idle``: whether this process's signing worker waits for work (None: it stopped). With
        several processes, work it is about to take wakes no other process (nothing to relay in one)."""

    def close(self) -> None:
        """Nothing to release in one process."""

    def wait(self, seen: int, timeout: float, channel: str | None = None) -> int:
        """Block until a notification (of ``channel``) after ``seen`` or ``timeout``; return the
        current :meth:`version` (of ``channel``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (current := Notifier.version(self, channel)) == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return current

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

    async def wait_for_async(self, check: Callable[[], T], done: Callable[[T], bool], timeout: float,
                             recheck: float = RECHECK_SECONDS, topic: str | None = None,
                             changes_in: Callable[[T], float | None] | None = None) -> T:
        """:meth:`wait_for` for a coroutine, woken only by notifications of ``topic`` (or naming
        none); ``check`` runs in the thread pool, the waits hold no thread, so that long polls and
        signers' confirmations do not use up the pool. ``changes_in``: in how many seconds a result
        changes with no notification (an expiry; None: it does not), when it is checked again."""
        entry = (asyncio.get_running_loop(), asyncio.Event(), topic)
        with self._cond:  # registered before the first check: a notification meanwhile is kept
            self._async_waiters.add(entry)
        try:
            deadline = time.monotonic() + timeout
            while True:
                entry[1].clear()
                result = await anyio.to_thread.run_sync(check)
                left = deadline - time.monotonic()
                if done(result) or left <= 0 or self._stopping:
                    return result
                by_itself = changes_in(result) if changes_in is not None else None
                pause = min(left, recheck, recheck if by_itself is None else max(by_itself, 0.0) + _LATE_SECONDS)
                try:
                    await asyncio.wait_for(entry[1].wait(), pause)
                except TimeoutError:
                    pass
        finally:
            with self._cond:
                self._async_waiters.discard(entry)


_LATE_SECONDS = 0.05
"""After a moment a result changes by itself (an expiry), so that it has changed when checked."""

# TCP keepalives: a listen connection whose server vanished without a FIN is noticed in ~20 s.
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 3, "keepalives_count": 3,
              "connect_timeout": 5}


class PgNotifier(Notifier):
    """Wake-ups across processes through PostgreSQL ``LISTEN/NOTIFY``.

    Per process: a listener thread on a dedicated connection that wakes local waiters on every
    other process's ``NOTIFY`` (this one's were woken when sent: waking them again on the echo
    made every waiter re-read the database twice), reconnecting with backoff when the connection drops; and a
    sender thread, so that :meth:`notify` never blocks its caller and a burst becomes one
    ``NOTIFY``, its payload the topics named meanwhile (empty: everyone). Callers notify after
    their transaction commits; waiters re-read the database anyway. Threads start on first use (or :meth:`start`).
    """

    def __init__(self, conninfo: str, channel: str = CHANNEL) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._channel = channel
        self._to_send = threading.Event()
        self._owed_lock = threading.Lock()
        self._owed_all = False  # a NOTIFY for everyone is owed
        self._owed_topics: set[str] = set()
        self._closed = threading.Event()
        self._start_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.listening = threading.Event()
        """Set while the listen connection is up (tests and diagnostics)."""
        self.listener_backend_pid: int | None = None
        self._sender_backend_pid: int | None = None
        self._local_worker_idle: Callable[[], bool] = _never

    def notify(self, *topics: str) -> None:
        # Work this process's own idle worker is about to take need not wake the others' (each
        # would query for it, and try to claim what is already claimed). A busy one passes it on.
        work_taken_here = WORK_TOPIC in topics and self._local_worker_idle()
        self._wake_local(frozenset(topics))  # this process's waiters need not wait for the round trip
        self.start()
        if work_taken_here:
            topics = tuple(t for t in topics if t != WORK_TOPIC)
            if not topics:  # an empty list would wake everyone
                return
        self._owe(topics)

    def take_work_locally(self, idle: Callable[[], bool] | None) -> None:
        self._local_worker_idle = idle or _never

    def _owe(self, topics: tuple[str, ...] | set[str]) -> None:
        with self._owed_lock:
            if topics:
                self._owed_topics.update(topics)
            else:
                self._owed_all = True
        self._to_send.set()

    def version(self, channel: str | None = None) -> int:
        self.start()
        return super().version(channel)

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
                        self._wake_local(frozenset(note.payload.split(",")) if note.payload else frozenset())
            except Exception as exc:  # noqa: BLE001 - e.g. the server restarted: reconnect
                log.warning("notifier: listen connection lost: %s", type(exc).__name__)
                self.listening.clear()
                _close_quietly(conn)
                conn = None
        self.listening.clear()
        _close_quietly(conn)

    def _send(self) -> None:
        conn: Any = None
        backoff = 0.2
        while True:
            self._to_send.wait()
            self._to_send.clear()
            with self._owed_lock:
                owed_all, owed = self._owed_all, self._owed_topics
                self._owed_all, self._owed_topics = False, set()
            if owed_all or owed:  # also at close: a CLI that notifies just before it exits is heard
                payload = "" if owed_all else ",".join(sorted(owed))
                if len(payload) > _MAX_PAYLOAD:
                    payload = ""  # too many at once: everyone re-checks
                try:
                    if conn is None:
                        conn = self._connect(autocommit=True)
                        self._sender_backend_pid = conn.info.backend_pid
                    conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
                    backoff = 0.2
                except Exception as exc:  # noqa: BLE001 - retried; waiters re-check meanwhile
                    log.warning("notifier: cannot send: %s", type(exc).__name__)
                    _close_quietly(conn)
                    conn = None
                    if not self._closed.wait(backoff):
                        self._owe(())  # what was lost is now everyone's
                    backoff = min(backoff * 2, 5.0)
            if self._closed.is_set():
                break
        _close_quietly(conn)


def _never() -> bool:
    return False


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
