"""What the hot paths' statements cost once a peak day is stored: each run on an empty database, then
with ``--history`` finished requests (a peak day: 200,000), as many hashes (half of them other
requests' still waiting), delivered webhooks and deleted uploads, on SQLite and PostgreSQL. Printed: the CPU of this process per call
(SQLite runs in it; PostgreSQL's own work is in its server) and the wall time per call, and their
ratios with the history to without: a statement that reads the open rows only stays near 1.

PostgreSQL: ``KYSO_BENCH_DATABASE_URL`` (default ``kyso_bench`` on 127.0.0.1), created if missing and
emptied. Usage: ``python -m bench.history [--history N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from bench.scratch import fresh_database
from bench.workers import DEFAULT_URL
from broker import approvals
from broker.db.engine import make_engine, read_connection, session_factory
from broker.db.migrate import upgrade
from broker.db.models import Document, ItemState, RequestItem, RequestState, SigningRequest, WebhookDelivery
from broker.db.models.clients import DeliveryState
from broker.lifecycle import finishing, load_limits, signing_requests
from broker.settings import Settings

CALLS = 200


def seed(engine: Engine) -> None:
    moment = signing_requests.now()
    with engine.begin() as c:
        c.execute(text("INSERT INTO relying_systems (id, name, webhook_allowlist, created_at, stored_uploads, "
                       "stored_upload_bytes) VALUES (1, 'dvc', '[]', :at, 0, 0)"), {"at": moment})
        c.execute(text("INSERT INTO oauth_clients (client_id, relying_system_id, secret_hash, scopes, status, "
                       "created_at) VALUES ('c1', 1, 'x', '[]', 'ACTIVE', :at)"), {"at": moment})


def add_history(url: str, count: int) -> None:
    """``count`` signed requests of 200 signers, their documents kept within retention, one hash
    each (every other one still waiting, as other requests' would), delivered webhooks and deleted
    uploads (foreign keys unchecked: the signers and credentials do not matter here)."""
    moment, old = signing_requests.now(), signing_requests.now() - timedelta(days=60)
    engine = create_engine(url)
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text("SET LOCAL session_replication_role = replica"))
        for start in range(0, count, 20_000):
            ids = [uuid.uuid4().hex for _ in range(start, min(count, start + 20_000))]
            at = [moment - timedelta(seconds=90 + start + n) for n in range(len(ids))]
            c.execute(insert(SigningRequest.__table__), [{
                "id": i, "credential_id": "cred", "user_id": 1 + n % 200, "relying_system": "dvc",
                "state": RequestState.SIGNED, "hash_algorithm": "sha256", "nonce": "n", "binding": b"b" * 32,
                "verification_code": "0000", "created_at": t, "expires_at": t + timedelta(minutes=5),
                "decided_at": t, "unconfirmed": False, "format": "cades", "client_id": "c1",
                "blobs": "kept", "ended_at": t}  # signed documents kept until their retention ends
                for n, (i, t) in enumerate(zip(ids, at))])
            c.execute(insert(RequestItem.__table__), [{
                "request_id": i, "position": 0, "digest": b"d" * 32, "title": "t", "summary": "s",
                "state": ItemState.PENDING if n % 2 else ItemState.CONSUMED} for n, i in enumerate(ids)])
            c.execute(insert(WebhookDelivery.__table__), [{
                "id": uuid.uuid4().hex, "request_id": i, "relying_system_id": 1, "url": "https://x", "body": "{}",
                "state": DeliveryState.DELIVERED, "attempts": 1, "next_attempt_at": t, "created_at": t} for i, t in zip(ids, at)])
            c.execute(insert(Document.__table__), [{
                "id": uuid.uuid4().hex, "client_id": "c1", "path": "/gone", "media_type": "application/pdf", "size": 1,
                "sha256": "0" * 64, "created_at": old, "retained_from": old, "deleted_at": old} for _ in ids])
        if engine.dialect.name == "postgresql":
            c.execute(text("ANALYZE"))
    engine.dispose()


def hot_paths(factory: sessionmaker[Session], settings: Settings) -> dict[str, Callable[[], object]]:
    def on_connection(work: Callable[[Any], object]) -> Callable[[], object]:
        def run() -> object:
            with read_connection(factory) as connection:
                return work(connection)
        return run

    def approval() -> None:  # an approval authorises its request's hashes (rolled back)
        with factory.kw["bind"].connect() as connection:
            connection.execute(approvals._AUTHORISE_ITEMS, {"b_request_id": "another"})
            connection.rollback()

    return {
        "the workers' approved work": lambda: finishing.pending_work(factory),
        "a request's admission": on_connection(lambda c: load_limits.admit(c, settings, "dvc")),
        "a signer's pending count": on_connection(lambda c: c.execute(
            signing_requests._PENDING_FOR_USER, {"user_id": 7, "moment": signing_requests.now()}).scalar()),
        "a phone's pending list": on_connection(lambda c: signing_requests.awaiting_confirmation(c, [7])),
        "an upload's admission": on_connection(lambda c: load_limits.admit_upload(c, settings, "dvc", 1)),
        "an approval's hashes": approval,
    }


def measure(factory: sessionmaker[Session], settings: Settings) -> dict[str, tuple[float, float]]:
    """Per hot path: CPU and wall seconds per call."""
    found = {}
    for name, run in hot_paths(factory, settings).items():
        run()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(CALLS):
            run()
        found[name] = ((time.process_time() - cpu) / CALLS, (time.perf_counter() - wall) / CALLS)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, default=200_000, help="finished requests stored (a peak day: 200,000)")
    args = parser.parse_args()
    settings = Settings(rate_limit_per_minute=10**9, max_pending_per_relying_system=10**9,
                        max_uploads_per_relying_system=10**9)
    with tempfile.TemporaryDirectory(prefix="kyso-history-") as name:
        urls = {"SQLite": f"sqlite:///{Path(name) / 'history.db'}",
                "PostgreSQL": os.environ.get("KYSO_BENCH_DATABASE_URL", DEFAULT_URL)}
        print(f"hot statements, {CALLS} calls each, empty then with {args.history:,} finished requests stored "
              "(and as many hashes, delivered webhooks and deleted uploads)")
        print(f"{'database':<11} {'statement':<28} {'CPU ms empty':>12} {'with history':>12} {'÷':>6} "
              f"{'wall ms empty':>13} {'with history':>12} {'÷':>6}")
        for kind, url in urls.items():
            if kind == "PostgreSQL":
                fresh_database(url)
            upgrade(url)
            engine = make_engine(url)
            seed(engine)
            factory = session_factory(engine)
            measure(factory, settings)  # warm: the first calls pay for connections and compiled statements
            empty = measure(factory, settings)
            add_history(url, args.history)
            full = measure(factory, settings)
            engine.dispose()
            for statement, (cpu, wall) in empty.items():
                cpu_h, wall_h = full[statement]
                print(f"{kind:<11} {statement:<28} {cpu * 1000:12.3f} {cpu_h * 1000:12.3f} {cpu_h / cpu:6.2f} "
                      f"{wall * 1000:13.3f} {wall_h * 1000:12.3f} {wall_h / wall:6.2f}")


if __name__ == "__main__":
    main()
