"""A relying system's stored uploads, counted on its row: what the upload quota reads."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, func, select, text, update

from broker import clients, directory
from broker.db.engine import read_connection, transaction
from broker.db.migrate import alembic_config
from broker.db.models import Document, OAuthClient, RelyingSystem, SigningMode
from broker.lifecycle import housekeeping, load_limits, uploads
from broker.lifecycle.signing_requests import now
from broker.runtime import Runtime
from tests.conftest import ACTOR
from tests.support import fresh_database


def _system(rt: Runtime, name: str) -> clients.ClientContext:
    with transaction(rt.sessions) as s:
        directory.add_unit(s, ACTOR, f"U-{name}", "Trường", SigningMode.REMOTE)
        clients.add_relying_system(s, ACTOR, name, [f"U-{name}"])
        client, _ = clients.add_client(s, ACTOR, name)
        return clients.ClientContext(client.client_id, name, frozenset(), frozenset({"sign"}))


def _upload(rt: Runtime, ctx: clients.ClientContext, name: str, size: int) -> Path:
    folder = rt.settings.blobs / "documents"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{rt.engine.dialect.name}"
    path.write_bytes(b"u" * size)
    uploads.register_upload(rt.sessions, ctx, path.name, path, size, hashlib.sha256(path.read_bytes()).hexdigest(),
                            "text/plain", rt.settings)
    return path


def _counted_and_real(rt: Runtime, name: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The system's counters, and the same counted from its documents."""
    with read_connection(rt.sessions) as connection:
        counted = load_limits.stored_uploads(connection, name)
        real = connection.execute(
            select(func.count(), func.coalesce(func.sum(Document.size), 0))
            .join(OAuthClient, OAuthClient.client_id == Document.client_id)
            .join(RelyingSystem, RelyingSystem.id == OAuthClient.relying_system_id)
            .where(RelyingSystem.name == name, Document.deleted_at.is_(None))).one()
    return counted, (int(real[0]), int(real[1]))


def test_uploads_are_counted_as_registered_refused_and_swept(db_runtime: Runtime) -> None:
    rt, name = db_runtime, "dvc-count"
    ctx = _system(rt, name)
    old = _upload(rt, ctx, "old", 10)
    _upload(rt, ctx, "new", 25)
    assert _counted_and_real(rt, name) == ((2, 35), (2, 35))
    rt.settings.max_uploads_per_relying_system, saved = 2, rt.settings.max_uploads_per_relying_system
    try:
        with pytest.raises(load_limits.UploadQuotaExceeded):
            _upload(rt, ctx, "refused", 5)
    finally:
        rt.settings.max_uploads_per_relying_system = saved
    assert not (rt.settings.blobs / "documents" / f"refused-{rt.engine.dialect.name}").exists()
    assert _counted_and_real(rt, name) == ((2, 35), (2, 35))  # a refused upload counts for nothing
    with transaction(rt.sessions) as s:
        s.execute(update(Document).where(Document.id == old.name).values(retained_from=now() - timedelta(days=40)))
    assert housekeeping.sweep(rt.sessions, rt.settings, ACTOR).uploads == 1
    assert _counted_and_real(rt, name) == ((1, 25), (1, 25))
    assert housekeeping.sweep(rt.sessions, rt.settings, ACTOR).uploads == 0
    assert _counted_and_real(rt, name) == ((1, 25), (1, 25))


def test_the_quota_reads_the_count_not_the_stored_uploads(db_runtime: Runtime) -> None:
    """The admission reads the system's row: it refuses at the counted cap with no upload stored
    (summing the stored uploads, as it once did, cost a scan of them on every upload)."""
    rt, name = db_runtime, "dvc-row"
    _system(rt, name)
    with transaction(rt.sessions) as s:
        s.execute(update(RelyingSystem).where(RelyingSystem.name == name)
                  .values(stored_uploads=rt.settings.max_uploads_per_relying_system))
    with read_connection(rt.sessions) as connection, pytest.raises(load_limits.UploadQuotaExceeded):
        load_limits.admit_upload(connection, rt.settings, name, 1)


def test_concurrent_uploads_never_pass_the_cap(db_runtime: Runtime) -> None:
    rt, name = db_runtime, "dvc-race"
    ctx = _system(rt, name)
    rt.settings.max_uploads_per_relying_system, saved = 3, rt.settings.max_uploads_per_relying_system
    outcomes: list[str] = []

    def one(n: int) -> None:
        try:
            _upload(rt, ctx, f"race-{n}", 10)
            outcomes.append("stored")
        except load_limits.UploadQuotaExceeded:
            outcomes.append("refused")

    try:
        threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        rt.settings.max_uploads_per_relying_system = saved
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    assert _counted_and_real(rt, name) == ((3, 30), (3, 30))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_migration_counts_what_is_already_stored(kind: str, tmp_path: Path) -> None:
    url = fresh_database(kind, tmp_path)
    config = alembic_config(url)
    command.upgrade(config, "0015")
    engine = create_engine(url)
    with engine.begin() as c:
        for system, client in ((1, "c-one"), (2, "c-two")):
            c.execute(text("INSERT INTO relying_systems (id, name, webhook_allowlist, created_at) "
                           "VALUES (:id, :name, '[]', :at)"), {"id": system, "name": f"rs-{system}", "at": now()})
            c.execute(text("INSERT INTO oauth_clients (client_id, relying_system_id, secret_hash, scopes, status, "
                           "created_at) VALUES (:c, :id, 'x', '[]', 'ACTIVE', :at)"), {"c": client, "id": system, "at": now()})
        for n, (client, size, deleted) in enumerate((("c-one", 10, False), ("c-one", 20, False), ("c-one", 40, True))):
            c.execute(text("INSERT INTO documents (id, client_id, path, media_type, size, sha256, created_at, "
                           "retained_from, deleted_at) VALUES (:id, :c, '/x', 'text/plain', :size, :h, :at, :at, :gone)"),
                      {"id": f"d{n}", "c": client, "size": size, "h": "0" * 64, "at": now(),
                       "gone": now() if deleted else None})
    command.upgrade(config, "head")
    with engine.connect() as c:
        assert load_limits.stored_uploads(c, "rs-1") == (2, 30)
        assert load_limits.stored_uploads(c, "rs-2") == (0, 0)
    engine.dispose()
