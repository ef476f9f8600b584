"""Signed checkpoints of the audit chain: every N events, on demand, at backup and at a clean shutdown.

A checkpoint signs the chain head (id and hash) with the HSM's audit key while holding the chain
lock, is recorded as an ``audit.checkpoint`` event and appended to the anchors file.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker.audit import Actor
from broker.audit.anchors import CHECKPOINT as ANCHOR_CHECKPOINT
from broker.audit.anchors import RESTORED as ANCHOR_RESTORED
from broker.audit.anchors import append_anchor
from broker.audit.key import sign_statement
from broker.db.engine import transaction
from broker.db.models import AuditEvent

if TYPE_CHECKING:
    from broker.runtime import Runtime

log = logging.getLogger("kyso.audit")

CHECKPOINT_ACTION = "audit.checkpoint"
RESTORED_ACTION = "audit.restored"
CHECKPOINT_KIND = "kyso.audit.checkpoint"
RESTORED_KIND = "kyso.audit.restored"
CHECKPOINT_FIELDS = ("head_id", "head_hash", "at")
RESTORED_FIELDS = ("returns_to_head_id", "returns_to_head_hash", "backup_manifest_sha256", "at")

_NO_INTERVAL = "kyso.audit.no_interval_checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    event_id: int
    head_id: int
    head_hash: bytes
    anchor: dict[str, Any]


def system_actor() -> Actor:
    return Actor("system", "kyso", socket.gethostname())


def write_checkpoint(runtime: Runtime, actor: Actor, reason: str) -> Checkpoint | None:
    """Sign the current head; None when the chain is empty."""
    with transaction(runtime.sessions) as session:
        session.info[_NO_INTERVAL] = True
        audit.lock_chain(session)
        current = audit.head(session)
        if current is None:
            return None
        head_id, head_hash = current
        fields = {"head_id": head_id, "head_hash": head_hash.hex(), "at": _now()}
        signed = sign_statement(runtime.hsm, CHECKPOINT_KIND, fields)
        recorded = audit.record(session, actor, CHECKPOINT_ACTION, details={**signed.details(), "reason": reason})
        anchor = _anchor(ANCHOR_CHECKPOINT, recorded)
    # After the commit: an anchor never names an event that was rolled back.
    append_anchor(runtime.settings.anchors_path, anchor)
    return Checkpoint(recorded.id, head_id, head_hash, anchor)


def checkpoint_on_shutdown(runtime: Runtime) -> Checkpoint | None:
    """For the server's clean shutdown: sign the head unless it is a checkpoint already. Never raises."""
    try:
        with transaction(runtime.sessions) as session:
            newest = session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc()).limit(1))
            if newest is None or newest == CHECKPOINT_ACTION:
                return None
        return write_checkpoint(runtime, system_actor(), "shutdown")
    except Exception as exc:  # noqa: BLE001 - shutdown goes on; the next start or interval signs
        log.warning("audit checkpoint at shutdown failed: %s", type(exc).__name__)
        return None


def write_restored(runtime: Runtime, actor: Actor, returns_to: dict[str, Any], manifest_sha256: str) -> int:
    """Record, signed, that the chain was restored to the anchor ``returns_to``; return the event id."""
    with transaction(runtime.sessions) as session:
        session.info[_NO_INTERVAL] = True
        audit.lock_chain(session)
        fields = {
            "returns_to_head_id": int(returns_to["head_id"]),
            "returns_to_head_hash": str(returns_to["head_hash"]),
            "backup_manifest_sha256": manifest_sha256,
            "at": _now(),
        }
        signed = sign_statement(runtime.hsm, RESTORED_KIND, fields)
        recorded = audit.record(session, actor, RESTORED_ACTION, details=signed.details())
        anchor = _anchor(ANCHOR_RESTORED, recorded)
    append_anchor(runtime.settings.anchors_path, anchor)
    return recorded.id


def install_interval_checkpoints(factory: sessionmaker[Session], runtime: Runtime) -> None:
    """After a commit whose events cross a multiple of ``audit_checkpoint_every``, sign a checkpoint."""
    every = runtime.settings.audit_checkpoint_every
    if every <= 0:
        return

    @event.listens_for(factory, "after_commit")
    def _after_commit(session: Session) -> None:
        first = session.info.pop(audit.RECORDED_FIRST, None)
        last = session.info.pop(audit.RECORDED_LAST, None)
        if first is None or last is None or session.info.pop(_NO_INTERVAL, False):
            return
        if last // every > (first - 1) // every:
            try:
                write_checkpoint(runtime, system_actor(), "interval")
            except Exception as exc:  # noqa: BLE001 - the business transaction is committed; sign at the next one
                log.warning("interval audit checkpoint failed: %s", type(exc).__name__)

    @event.listens_for(factory, "after_rollback")
    def _after_rollback(session: Session) -> None:
        for key in (audit.RECORDED_FIRST, audit.RECORDED_LAST, _NO_INTERVAL):
            session.info.pop(key, None)


def _anchor(kind: str, recorded: AuditEvent) -> dict[str, Any]:
    return {"type": kind, **recorded.details, "event_id": recorded.id, "event_hash": recorded.hash.hex()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
