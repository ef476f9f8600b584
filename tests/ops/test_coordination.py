"""What workers share, in one process: PostgreSQL LISTEN/NOTIFY wake-ups (also after the listen
connection is killed) and webhook claims that never hand one delivery to two senders."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from broker.db.engine import make_engine, session_factory, transaction
from broker.db.migrate import upgrade
from broker.db.models import DeliveryState, RelyingSystem, WebhookDelivery
from broker.lifecycle import webhooks
from broker.lifecycle.signing_requests import now
from broker.notify import Notifier, PgNotifier, make_notifier
from tests.support import fresh_schema, postgres_url


def pg_notifier(channel: str) -> PgNotifier:
    notifier = make_notifier(postgres_url())
    assert isinstance(notifier, PgNotifier)
    notifier._channel = channel  # one channel per test: nothing else wakes these waiters
    return notifier


def notify_when(poke: threading.Event, notifier: Notifier) -> None:
    poke.wait()
    time.sleep(0.1)
    notifier.notify()


def woken_within(notifier: Notifier, poke: threading.Event, timeout: float = 10.0) -> float:
    """Seconds until a waiter on ``notifier`` wakes after ``poke`` is set by the caller's thread."""
    seen = notifier.version()
    poke.set()
    started = time.monotonic()
    notifier.wait(seen, timeout)
    return time.monotonic() - started


@pytest.mark.postgres
def test_a_notification_in_one_process_wakes_a_waiter_in_another() -> None:
    channel = f"kyso_test_{uuid.uuid4().hex[:8]}"
    waiting, sending = pg_notifier(channel), pg_notifier(channel)
    try:
        waiting.start()
        poke = threading.Event()
        threading.Thread(target=notify_when, args=(poke, sending)).start()
        assert woken_within(waiting, poke) < 3  # far below the 10 s the waiter would otherwise sleep
    finally:
        waiting.close()
        sending.close()


@pytest.mark.postgres
def test_the_listener_reconnects_after_its_connection_is_killed() -> None:
    channel = f"kyso_test_{uuid.uuid4().hex[:8]}"
    waiting, sending = pg_notifier(channel), pg_notifier(channel)
    engine = make_engine(postgres_url())
    try:
        waiting.start()
        first = waiting.listener_backend_pid
        assert waiting.listening.is_set() and first
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        deadline = time.monotonic() + 15
        while waiting.listener_backend_pid == first or not waiting.listening.is_set():
            assert time.monotonic() < deadline, "the listener did not reconnect"
            time.sleep(0.1)
        poke = threading.Event()
        threading.Thread(target=notify_when, args=(poke, sending)).start()
        assert woken_within(waiting, poke) < 3
    finally:
        waiting.close()
        sending.close()
        engine.dispose()


def test_sqlite_keeps_the_in_process_notifier(tmp_path: Path) -> None:
    assert type(make_notifier(f"sqlite:///{tmp_path / 'kyso.db'}")) is Notifier


# -- webhook claims -------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kyso.db'}"
    else:
        url = postgres_url()
        fresh_schema(url)
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


class CountingReceiver:
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(0.01)  # widen the window in which another worker could claim the same row
                with receiver.lock:
                    receiver.events[self.headers["Kyso-Event-Id"]] += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_concurrent_workers_deliver_each_webhook_once(factory: sessionmaker[Session]) -> None:
    receiver = CountingReceiver()
    with transaction(factory) as s:
        rs = RelyingSystem(name="dvc-claims", webhook_allowlist=[receiver.url], units=[], webhook_secret="s")
        s.add(rs)
        s.flush()
        for i in range(30):
            s.add(WebhookDelivery(id=uuid.uuid4().hex, request_id=f"r{i}", relying_system_id=rs.id, url=receiver.url,
                                  body="{}", state=DeliveryState.PENDING, attempts=0, next_attempt_at=now()))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while webhooks.deliver_due(factory, allow_private=True, limit=5):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    receiver.server.shutdown()
    assert not errors
    with transaction(factory) as s:
        rows = list(s.query(WebhookDelivery))
    assert all(r.state is DeliveryState.DELIVERED and r.attempts == 1 for r in rows)
    assert receiver.events == Counter({r.id: 1 for r in rows})
