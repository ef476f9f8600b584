"""Engines and transactions.

SQLite runs in WAL mode and every transaction starts with ``BEGIN IMMEDIATE``, so a
transaction that reads then writes holds the write lock from its start; a transaction opened with
:func:`read_transaction` starts deferred instead and never blocks or waits for writers. Writers of
one process queue on a lock before ``BEGIN IMMEDIATE``: SQLite's own busy handler sleeps between
retries (up to 100 ms a round), which made the slowest requests wait for nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

_READ_ONLY: ContextVar[bool] = ContextVar("kyso_read_only_transaction", default=False)
_BARE = "kyso_bare_statement"
_WRITER = "kyso_writer_lock"
_WRITER_WAIT_SECONDS = 30


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        writer = threading.Lock()  # owned by a connection, not a thread

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            if conn.get_execution_options().get(_BARE):
                return  # one statement, in SQLite's own autocommit: no transaction to open
            if _READ_ONLY.get():
                conn.exec_driver_sql("BEGIN")
                return
            # Held until this transaction's COMMIT or ROLLBACK is done. If the wait runs out,
            # SQLite's busy timeout decides as it would without the lock.
            if not conn.info.get(_WRITER) and writer.acquire(timeout=_WRITER_WAIT_SECONDS):
                conn.info[_WRITER] = True
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        def _release(conn_info: dict[str, Any]) -> None:
            if conn_info.pop(_WRITER, False):
                writer.release()

        def _then_release(end: Callable[[Any], None]) -> Callable[[Any], None]:
            def ended(pooled_conn: Any) -> None:  # the pool's proxy: its ``info`` is the connection's
                try:
                    end(pooled_conn)
                finally:
                    try:
                        info = pooled_conn.info
                    except NotImplementedError:  # the dialect's own first connection, never ours
                        return
                    _release(info)

            return ended

        # After the statement itself, so that the next writer's BEGIN IMMEDIATE never meets a
        # lock still held (an after-commit hook may already write again).
        engine.dialect.do_commit = _then_release(engine.dialect.do_commit)  # type: ignore[method-assign]
        engine.dialect.do_rollback = _then_release(engine.dialect.do_rollback)  # type: ignore[method-assign]

        @event.listens_for(engine, "checkin")
        def _on_checkin(_dbapi_conn: Any, record: Any) -> None:  # a connection invalidated mid-transaction
            _release(record.info)

        return engine
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 1.0
"""A pooled connection unused this long is pinged before it is handed out (a busy one is not)."""
_IDLE_SINCE = "kyso_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, paid only by connections that sat in the pool: a connection
    checked in a moment ago is handed out as it is (a ping per checkout is a round trip per request).
    A dead one is replaced (the pool tries again); a server lost mid-use invalidates the whole pool."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # new, or busy a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception:  # noqa: BLE001 - whatever the driver raises for a closed connection
            alive = False
        if not alive:
            raise exc.DisconnectionError("the pooled connection did not answer its ping")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction that only reads: on SQLite it takes no write lock (WAL readers never wait).

    It ends in a rollback; the objects read stay loaded afterwards, as after :func:`transaction`.
    """
    token = _READ_ONLY.set(True)
    try:
        with transaction(factory) as session:
            yield session
            session.expunge_all()  # detached as they are, not expired by the rollback
            session.rollback()
    finally:
        _READ_ONLY.reset(token)


@contextmanager
def read_connection(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A bare connection for one read-only Core statement on a hot path (what every waiter asks at
    each wake-up): no ORM session, and no transaction around it — a single statement reads one
    consistent snapshot on its own, so neither BEGIN nor ROLLBACK is sent (on PostgreSQL, two
    round trips fewer per call)."""
    engine = factory.kw["bind"]
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            yield connection.execution_options(**{_BARE: True})
        else:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def read_session(factory: sessionmaker[Session]) -> Iterator[Session]:
    """An ORM session over :func:`read_connection`, for reads whose statements need no snapshot in
    common (a request's view, a file's place): no BEGIN or ROLLBACK around them. The objects read stay
    loaded afterwards, detached."""
    with read_connection(factory) as connection:
        session = factory(bind=connection)
        try:
            yield session
            session.expunge_all()
        finally:
            session.close()


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
