"""The hot paths' statements read the open rows, not the history: on SQLite (no statistics for its
planner), the work each does, counted in virtual-machine steps, stays the same whether 200 or 20,000
finished requests (and their hashes), delivered webhooks and deleted uploads are stored (a peak day
adds 200,000 requests)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from broker import approvals
from broker.db.engine import make_engine, read_connection, session_factory
from broker.db.migrate import upgrade
from broker.db.models import Document, ItemState, RequestItem, RequestState, SigningRequest, WebhookDelivery
from broker.db.models.clients import DeliveryState
from broker.lifecycle import finishing, housekeeping, load_limits, signing_requests, sole_control, webhooks
from broker.settings import Settings
from tests.conftest import ACTOR

_STEP = 50  # the progress handler runs every this many VM instructions


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[Engine, sessionmaker[Session], list[int]]]:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    upgrade(url)
    engine = make_engine(url)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_progress_handler(count, _STEP)

    with engine.begin() as c:
        c.execute(text("INSERT INTO relying_systems (id, name, webhook_allowlist, created_at, stored_uploads, "
                       "stored_upload_bytes) VALUES (1, 'dvc', '[]', :at, 0, 0)"), {"at": signing_requests.now()})
        c.execute(text("INSERT INTO oauth_clients (client_id, relying_system_id, secret_hash, scopes, status, "
                       "created_at) VALUES ('c1', 1, 'x', '[]', 'ACTIVE', :at)"), {"at": signing_requests.now()})
    yield engine, session_factory(engine), steps
    engine.dispose()


def _history(engine: Engine, count: int) -> None:
    """``count`` finished requests of 20 signers, as many delivered webhooks and deleted uploads."""
    moment = signing_requests.now()
    old = moment - timedelta(days=60)
    requests, deliveries, documents, items = [], [], [], []
    for i in range(count):
        at = moment - timedelta(seconds=90 + i)
        requests.append({
            "id": uuid.uuid4().hex, "credential_id": "cred", "user_id": 1 + i % 20, "relying_system": "dvc",
            "state": RequestState.SIGNED, "hash_algorithm": "sha256", "nonce": "n", "binding": b"b" * 32,
            "verification_code": "0000", "created_at": at, "expires_at": at + timedelta(minutes=5),
            "unconfirmed": False, "format": "cades", "client_id": "c1", "blobs": "gone", "decided_at": at})
        deliveries.append({
            "id": uuid.uuid4().hex, "request_id": "r", "relying_system_id": 1, "url": "https://x", "body": "{}",
            "state": DeliveryState.DELIVERED, "attempts": 1, "next_attempt_at": at, "created_at": at})
        items.append({  # other requests' hashes, waiting for their signers, and signed ones
            "request_id": requests[-1]["id"], "position": 0, "digest": b"d" * 32, "title": "t", "summary": "s",
            "state": ItemState.PENDING if i % 2 else ItemState.CONSUMED})
        documents.append({
            "id": uuid.uuid4().hex, "client_id": "c1", "path": "/gone", "media_type": "application/pdf",
            "size": 1, "sha256": "0" * 64, "created_at": old, "retained_from": old, "deleted_at": old})
    plain = create_engine(engine.url)  # foreign keys unchecked: the signers and credentials are not needed
    with plain.begin() as c:
        for table, rows in ((SigningRequest, requests), (WebhookDelivery, deliveries), (Document, documents),
                            (RequestItem, items)):
            c.execute(insert(table.__table__), rows)
    plain.dispose()


def _hot_paths(factory: sessionmaker[Session], settings: Settings) -> dict[str, Callable[[], object]]:
    def in_connection(work: Callable[[Any], object]) -> Callable[[], object]:
        def run() -> object:
            with read_connection(factory) as connection:
                return work(connection)
        return run

    def rolled_back(statement: Any) -> Callable[[], object]:
        def run() -> object:
            with factory.kw["bind"].connect() as connection:
                connection.execute(statement, {"b_request_id": "another", "b_at": signing_requests.now()})
                connection.rollback()
            return None
        return run

    return {
        "an approval's hashes": rolled_back(approvals._AUTHORISE_ITEMS),
        "a reservation's hashes": rolled_back(sole_control._RESERVE),
        "the workers' approved work": lambda: finishing.pending_work(factory),
        "a request's admission": in_connection(lambda c: load_limits.admit(c, settings, "dvc")),
        "a signer's pending count": in_connection(lambda c: c.execute(
            signing_requests._PENDING_FOR_USER, {"user_id": 7, "moment": signing_requests.now()}).scalar()),
        "a phone's awaiting list": in_connection(lambda c: signing_requests.awaiting_confirmation(c, [7])),
        "an upload's admission": in_connection(lambda c: load_limits.admit_upload(c, settings, "dvc", 1)),
        "the due webhooks": lambda: webhooks.deliver_due(factory, allow_private=True),
        "a housekeeping run": lambda: housekeeping.sweep(factory, settings, ACTOR),
    }


def test_hot_statements_do_not_read_the_history(counted: tuple[Engine, sessionmaker[Session], list[int]],
                                                settings: Settings) -> None:
    engine, factory, steps = counted
    settings = settings.model_copy(update={"rate_limit_per_minute": 10**6})

    def measure() -> dict[str, int]:
        spent = {}
        for name, run in _hot_paths(factory, settings).items():
            run()  # first use: prepared statements, the pool's connection
            before = steps[0]
            run()
            spent[name] = steps[0] - before
        return spent

    _history(engine, 200)
    small = measure()
    _history(engine, 20_000)
    large = measure()
    grown = {name: (small[name], large[name]) for name in small if large[name] > 2 * small[name] + 20}
    assert not grown, f"VM steps (×{_STEP}) that grew with 100× more history: {grown}"
