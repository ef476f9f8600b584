"""Expired access tokens are deleted by the worker's housekeeping; revoking a client deletes its tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from broker import clients, directory
from broker.db.engine import read_connection, transaction
from broker.db.models import AccessToken, AuditEvent, SigningMode
from broker.lifecycle.signing_requests import now
from broker.runtime import Runtime
from tests.conftest import ACTOR


def _client_with_tokens(rt: Runtime, name: str, count: int) -> tuple[str, list[str]]:
    with transaction(rt.sessions) as s:
        directory.add_unit(s, ACTOR, f"U-{name}", "Trường", SigningMode.REMOTE)
        clients.add_relying_system(s, ACTOR, name, [f"U-{name}"])
        client, secret = clients.add_client(s, ACTOR, name)
    tokens = []
    for _ in range(count):
        with transaction(rt.sessions) as s:
            tokens.append(clients.issue_token(s, None, client.client_id, secret, None)[0])
    return client.client_id, tokens


def _tokens(rt: Runtime, client_id: str) -> int:
    with read_connection(rt.sessions) as c:
        return int(c.execute(select(func.count()).select_from(AccessToken).where(AccessToken.client_id == client_id)).scalar_one())


def test_expired_tokens_are_purged_and_audited(db_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = db_runtime
    client_id, tokens = _client_with_tokens(rt, "dvc-purge", 5)
    expired = [clients.token_hash(t) for t in tokens[:3]]
    with transaction(rt.sessions) as s:
        s.execute(update(AccessToken).where(AccessToken.token_hash.in_(expired))
                  .values(expires_at=now() - timedelta(minutes=1)))
    monkeypatch.setattr(clients, "PURGE_BATCH", 2)  # a run deletes a batch; the next run the rest
    for purged in (2, 1, 0):
        with transaction(rt.sessions) as s:
            assert clients.purge_expired_tokens(s, ACTOR, now()) == purged
    assert _tokens(rt, client_id) == 2
    with read_connection(rt.sessions) as c:
        for token in tokens[:3]:
            with pytest.raises(clients.InvalidToken):  # as refused as before it was deleted
                clients.authenticate(c, token)
        assert clients.authenticate(c, tokens[3]).client_id == client_id
    with transaction(rt.sessions) as s:
        details = [e.details for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "token.purge")
                                                .order_by(AuditEvent.id))]
    assert details == [{"expired": 2}, {"expired": 1}]


def test_rotating_or_disabling_a_client_deletes_its_tokens(db_runtime: Runtime) -> None:
    rt = db_runtime
    client_id, tokens = _client_with_tokens(rt, "dvc-revoke", 3)
    other_id, _ = _client_with_tokens(rt, "dvc-other", 2)
    with transaction(rt.sessions) as s:
        clients.rotate_secret(s, ACTOR, client_id)
    assert (_tokens(rt, client_id), _tokens(rt, other_id)) == (0, 2)
    with transaction(rt.sessions) as s:
        clients.disable_client(s, ACTOR, other_id)
    assert _tokens(rt, other_id) == 0
    with read_connection(rt.sessions) as c, pytest.raises(clients.InvalidToken):
        clients.authenticate(c, tokens[0])
