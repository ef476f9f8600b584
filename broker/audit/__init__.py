"""The audit log: every state change writes an event in the same transaction.

Events are hash-chained: ``hash = SHA-256(prev_hash ‖ canonical JSON of the event)``, so that
an altered, removed or reordered event breaks the chain.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from broker.db.engine import transaction
from broker.db.models import AuditEvent

GENESIS = bytes(32)
RECORDED_FIRST = "kyso.audit.first_id"
RECORDED_LAST = "kyso.audit.last_id"


@dataclass(frozen=True)
class Actor:
    """Who did it, from where."""

    kind: str
    name: str
    origin: str | None = None

    def label(self) -> str:
        where = f"@{self.origin}" if self.origin else ""
        return f"{self.kind}:{self.name}{where}"


def cli_actor() -> Actor:
    """The OS user and host running the CLI."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("cli", user, socket.gethostname())


def event_digest(prev_hash: bytes, event: AuditEvent) -> bytes:
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=timezone.utc)  # SQLite drops the zone
    body = {
        "id": event.id,
        "at": at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "details": event.details,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(prev_hash + canonical.encode()).digest()


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    outcome: str = "ok",
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the chain inside the caller's transaction (returned, not attached to it)."""
    connection = session.connection()
    last_id, prev_hash = _head_for_append(session, connection)
    event = AuditEvent(
        id=last_id + 1,
        at=datetime.now(timezone.utc),
        actor=actor.label(),
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
        prev_hash=prev_hash,
        hash=b"",
    )
    event.hash = event_digest(prev_hash, event)
    # A Core INSERT: the hot paths write several events per request, and the ORM unit of work
    # costs more than the statement.
    connection.execute(_APPEND, {column: getattr(event, column) for column in _COLUMNS})
    session.info[_APPENDED] = (connection.get_transaction(), event.id, event.hash)
    # Read after commit by the interval checkpoint (broker.audit.checkpoint).
    session.info.setdefault(RECORDED_FIRST, event.id)
    session.info[RECORDED_LAST] = event.id
    return event


_COLUMNS = ("id", "at", "actor", "action", "outcome", "target_type", "target_id", "details", "prev_hash", "hash")
_TABLE = AuditEvent.__table__
# Built once: statements are executed on the connection (no ORM) on every request's path.
_HEAD = select(_TABLE.c.id, _TABLE.c.hash).order_by(_TABLE.c.id.desc()).limit(1)
_APPEND = insert(_TABLE)
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(7101)")


_APPENDED = "kyso.audit.appended"
"""In ``session.info``: the transaction that last appended, and the id and hash it appended."""


def _head_for_append(session: Session, connection: Connection) -> tuple[int, bytes]:
    """The chain's head to link the next event to: locked and read once per transaction; the
    events it appends next follow the one it appended last (it holds the chain's lock until it ends)."""
    appended = session.info.get(_APPENDED)
    transaction_ = connection.get_transaction()
    if (appended is not None and transaction_ is not None and appended[0] is transaction_ and transaction_.is_active
            and connection.get_nested_transaction() is None):  # a savepoint could roll an event back: read again
        return appended[1], appended[2]
    lock_chain(session)
    last = connection.execute(_HEAD).first()
    return (last.id, last.hash) if last else (0, GENESIS)


def lock_chain(session: Session) -> None:
    """Hold the chain's append lock until the transaction ends (SQLite: BEGIN IMMEDIATE already does)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_ADVISORY_LOCK)


def head(session: Session) -> tuple[int, bytes] | None:
    """The newest event's id and hash."""
    last = session.connection().execute(_HEAD).first()
    return (last.id, last.hash) if last else None


def list_events(session: Session, limit: int = 50, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(reversed(session.scalars(query).all()))


def verify_chain(session: Session) -> AuditEvent | None:
    """The first event whose link or content does not check, or None."""
    prev_hash = GENESIS
    expected_id = 1
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)):
        if event.id != expected_id or event.prev_hash != prev_hash or event_digest(prev_hash, event) != event.hash:
            return event
        prev_hash = event.hash
        expected_id += 1
    return None


def record_refusal(factory: sessionmaker[Session], actor: Actor, action: str, error: Exception, *,
                   target_type: str | None = None, target_id: str | None = None,
                   details: dict[str, Any] | None = None) -> None:
    """Audit a refused attempt in a transaction of its own (the attempt's was rolled back)."""
    code = str(getattr(error, "code", type(error).__name__))
    with transaction(factory) as session:
        record(session, actor, action, outcome="refused", target_type=target_type,
               target_id=(target_id or "")[:64] or None, details={"reason": code, **(details or {})})
