"""Tamper-evident audit: every kind of tampering is caught by ``kyso audit verify``, signed checkpoints, exports.

The CLI runs in process on the session's data dir (its token), pointed by KYSO_DATABASE_URL and
KYSO_AUDIT_ANCHORS_FILE at a fresh database and anchors file of each test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select, update

from broker import audit
from broker.audit.checkpoint import checkpoint_on_shutdown, write_checkpoint
from broker.audit.key import AUDIT_KEY_ID, audit_public_key
from broker.db.engine import transaction
from broker.db.migrate import upgrade
from broker.db.models import AuditEvent
from broker.runtime import Runtime
from broker.settings import Settings
from hsm import Hsm
from tests.conftest import ACTOR
from tests.support import fresh_database

Kyso = Callable[..., tuple[int, str, str]]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def chain(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, hsm: Hsm,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A fresh database and anchors file, shared with the CLI through the environment."""
    url = fresh_database(request.param, tmp_path)
    upgrade(url)
    anchors = tmp_path / "anchors.jsonl"
    monkeypatch.setenv("KYSO_DATABASE_URL", url)
    monkeypatch.setenv("KYSO_AUDIT_ANCHORS_FILE", str(anchors))
    rt = Runtime(settings.model_copy(update={"database_url": url, "audit_anchors_file": anchors,
                                             "audit_checkpoint_every": 0}), hsm=hsm)
    yield rt
    rt.notifier.close()
    rt.engine.dispose()


def add_events(rt: Runtime, count: int) -> None:
    for n in range(count):
        with transaction(rt.sessions) as s:
            audit.record(s, ACTOR, "test.event", target_type="unit", target_id=f"U{n}", details={"n": n, "tên": "Lan"})


def standard_chain(rt: Runtime) -> None:
    """Events 1–6, checkpoint 7 (head 6), events 8–11, checkpoint 12 (head 11), events 13–14."""
    add_events(rt, 6)
    assert write_checkpoint(rt, ACTOR, "manual") is not None
    add_events(rt, 4)
    assert write_checkpoint(rt, ACTOR, "manual") is not None
    add_events(rt, 2)


def rehash_from(rt: Runtime, first_id: int) -> None:
    """What a careful forger does after an edit: recompute every later link so the bare chain checks."""
    with transaction(rt.sessions) as s:
        prev = s.scalar(select(AuditEvent.hash).where(AuditEvent.id == first_id - 1)) or audit.GENESIS
        for event in s.scalars(select(AuditEvent).where(AuditEvent.id >= first_id).order_by(AuditEvent.id)):
            event.prev_hash = prev
            event.hash = audit.event_digest(prev, event)
            prev = event.hash


def assert_broken_at(kyso: Kyso, event_id: int, *words: str) -> str:
    code, out, err = kyso("audit", "verify")
    assert code == 1, out + err
    first = out.splitlines()[0]
    assert f"BROKEN at event {event_id}:" in first, out
    for word in words:
        assert word in first, out
    return out


def test_intact_chain_with_checkpoints_verifies(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    code, out, err = kyso("audit", "verify")
    assert code == 0, out + err
    assert "intact: events 1–14" in out and "2 signed" in out and "newest (event 11) matches" in out
    with transaction(chain.sessions) as s:
        cp = s.get(AuditEvent, 12)
        assert cp is not None and cp.action == "audit.checkpoint"
        assert cp.details["head_id"] == 11 and cp.details["key_id"] == AUDIT_KEY_ID
    lines = [json.loads(line) for line in chain.settings.anchors_path.read_text().splitlines()]
    assert [(a["type"], a["head_id"], a["event_id"]) for a in lines] == [("checkpoint", 6, 7), ("checkpoint", 11, 12)]
    assert chain.settings.anchors_path.stat().st_mode & 0o777 == 0o600
    # The audit key never leaves the token.
    attributes = chain.hsm.key_attributes(AUDIT_KEY_ID)
    assert attributes["sensitive"] and not attributes["extractable"] and attributes["never_extractable"]


def test_a_deleted_event_is_named(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id == 5))
    assert_broken_at(kyso, 5, "missing", "from event 4 to 6")


def test_an_altered_event_is_named(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        event = s.get(AuditEvent, 9)
        assert event is not None
        event.details = {**event.details, "n": 999}
    assert_broken_at(kyso, 9, "altered")


def test_two_reordered_events_are_named(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        s.execute(update(AuditEvent).where(AuditEvent.id == 3).values(id=-3))
        s.execute(update(AuditEvent).where(AuditEvent.id == 4).values(id=3))
        s.execute(update(AuditEvent).where(AuditEvent.id == -3).values(id=4))
    assert_broken_at(kyso, 3, "does not link to event 2")


def test_a_cut_tail_is_caught_by_the_newest_anchor(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        s.execute(delete(AuditEvent).where(AuditEvent.id >= 10))
    out = assert_broken_at(kyso, 10, "cut tail", "ends at event 9")
    assert "anchors.jsonl line 2" in out


def test_a_rewritten_and_rehashed_chain_is_caught_by_the_signatures(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        event = s.get(AuditEvent, 3)
        assert event is not None
        event.details = {**event.details, "n": -1}
    rehash_from(chain, 3)
    with transaction(chain.sessions) as s:
        assert audit.verify_chain(s) is None  # the bare chain is consistent again...
    assert_broken_at(kyso, 6, "rewritten")  # ...but checkpoint 7 signed another hash of event 6


def test_an_altered_checkpoint_signature_is_named(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        first, second = s.get(AuditEvent, 7), s.get(AuditEvent, 12)
        assert first is not None and second is not None
        second.details = {**second.details, "signature": first.details["signature"]}  # a real signature, other head
    rehash_from(chain, 12)
    assert_broken_at(kyso, 12, "audit.checkpoint", "signature does not verify")


def test_an_altered_anchor_signature_is_named(chain: Runtime, kyso: Kyso) -> None:
    standard_chain(chain)
    path = chain.settings.anchors_path
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["head_hash"] = "00" * 32
    lines[1] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = kyso("audit", "verify")
    assert code == 1 and "anchors.jsonl line 2: signature does not verify" in out, out


def test_interval_and_shutdown_checkpoints(chain: Runtime, kyso: Kyso) -> None:
    rt = Runtime(chain.settings.model_copy(update={"audit_checkpoint_every": 5}), hsm=chain.hsm)
    try:
        add_events(rt, 4)
        assert not rt.settings.anchors_path.exists()
        add_events(rt, 1)  # event 5 crosses the interval: checkpoint 6 signs head 5
        anchors = [json.loads(line) for line in rt.settings.anchors_path.read_text().splitlines()]
        assert [(a["head_id"], a["reason"]) for a in anchors] == [(5, "interval")]
        add_events(rt, 2)
        made = checkpoint_on_shutdown(rt)
        assert made is not None and made.head_id == 8 and made.anchor["reason"] == "shutdown"
        assert checkpoint_on_shutdown(rt) is None  # nothing new since
        code, out, err = kyso("audit", "checkpoint")
        assert code == 0 and "head event 9" in out, out + err
        code, out, err = kyso("audit", "verify")
        assert code == 0 and "intact: events 1–10" in out, out + err
    finally:
        rt.engine.dispose()


def test_export_then_verify_offline(chain: Runtime, kyso: Kyso, tmp_path: Path) -> None:
    standard_chain(chain)
    with transaction(chain.sessions) as s:
        since = s.scalar(select(AuditEvent.at).where(AuditEvent.id == 4))
    assert since is not None
    out_file = tmp_path / "export.jsonl"
    code, out, err = kyso("audit", "export", "--since", since.isoformat(), "--out", str(out_file))
    assert code == 0 and "events 4–14 (11)" in out, out + err
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    header, trailer = lines[0], lines[-1]
    assert header["type"] == "header" and "BEGIN PUBLIC KEY" in header["audit_key"]["public_key_pem"]
    assert trailer["type"] == "trailer" and trailer["count"] == 11
    assert sum(1 for line in lines if line["type"] == "anchor") == 2

    code, out, err = kyso("audit", "verify", "--file", str(out_file))
    assert code == 0 and "intact: events 4–14" in out, out + err
    pem = tmp_path / "audit.pem"
    key = audit_public_key(chain.hsm)
    assert key is not None
    pem.write_text(key.pem())
    assert kyso("audit", "verify", "--file", str(out_file), "--key", str(pem))[0] == 0

    # An edited event, a dropped last event, a foreign key: each caught offline.
    edited = tmp_path / "edited.jsonl"
    changed = [dict(line) for line in lines]
    changed[5] = {**changed[5], "details": {"n": 42}}
    edited.write_text("".join(json.dumps(line) + "\n" for line in changed))
    code, out, _ = kyso("audit", "verify", "--file", str(edited))
    assert code == 1 and f"BROKEN at event {changed[5]['id']}: " in out and "altered" in out, out

    truncated = tmp_path / "truncated.jsonl"
    kept = [line for line in lines if not (line["type"] == "event" and line["id"] == 14)]
    truncated.write_text("".join(json.dumps(line) + "\n" for line in kept))
    code, out, _ = kyso("audit", "verify", "--file", str(truncated))
    assert code == 1 and "trailer" in out and "count" in out, out

    other = tmp_path / "other.pem"
    other.write_text(_other_public_key_pem())
    code, out, _ = kyso("audit", "verify", "--file", str(out_file), "--key", str(other))
    assert code == 1 and "not the expected" in out, out


def test_verify_is_read_only_and_checkpoint_on_an_empty_log(chain: Runtime, kyso: Kyso) -> None:
    code, out, _ = kyso("audit", "checkpoint")
    assert code == 0 and "empty" in out
    code, out, _ = kyso("audit", "verify")
    assert code == 0 and "no events" in out
    with transaction(chain.sessions) as s:
        assert s.scalar(select(AuditEvent.id)) is None


def _other_public_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
