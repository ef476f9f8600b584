"""Verifying the audit log: the hash chain, the signed checkpoints and restores, and the anchors file.

The walk stops at the first broken link (nothing after it can be trusted); signature and anchor
problems are collected, and the report lists them in chain order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.audit import GENESIS, event_digest
from broker.audit.anchors import CHECKPOINT as ANCHOR_CHECKPOINT
from broker.audit.anchors import RESTORED as ANCHOR_RESTORED
from broker.audit.anchors import read_anchors
from broker.audit.checkpoint import (
    CHECKPOINT_ACTION,
    CHECKPOINT_FIELDS,
    CHECKPOINT_KIND,
    RESTORED_ACTION,
    RESTORED_FIELDS,
    RESTORED_KIND,
)
from broker.audit.key import AuditPublicKey
from broker.db.models import AuditEvent

_SIGNED = {
    CHECKPOINT_ACTION: (CHECKPOINT_KIND, CHECKPOINT_FIELDS, "head_id", "head_hash"),
    RESTORED_ACTION: (RESTORED_KIND, RESTORED_FIELDS, "returns_to_head_id", "returns_to_head_hash"),
}
_ANCHOR_KINDS = {ANCHOR_CHECKPOINT: CHECKPOINT_ACTION, ANCHOR_RESTORED: RESTORED_ACTION}


@dataclass(frozen=True)
class Problem:
    event_id: int | None
    """The first event concerned (None: the problem is not at an event)."""
    where: str
    message: str

    def __str__(self) -> str:
        if self.event_id is None:
            return f"at {self.where}: {self.message}"
        if self.where == f"event {self.event_id}":
            return f"at event {self.event_id}: {self.message}"
        return f"at event {self.event_id}: {self.where}: {self.message}"


@dataclass
class Report:
    events: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: bytes | None = None
    signed_events: int = 0
    anchors: int = 0
    superseded_anchors: int = 0
    restores: int = 0
    newest_anchor_head: int | None = None
    key_fingerprint: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def sorted_problems(self) -> list[Problem]:
        return sorted(self.problems, key=lambda p: (p.event_id is None, p.event_id or 0))


@dataclass(frozen=True)
class _Claim:
    """A signed statement that event ``head_id`` had hash ``head_hash``."""

    head_id: int
    head_hash: str
    where: str


class ChainWalker:
    """Feed events in id order; checks links, contents and signed events."""

    def __init__(self, report: Report, key: AuditPublicKey | None, first_id: int = 1,
                 prev_hash: bytes = GENESIS) -> None:
        self.report = report
        self.key = key
        self.expected_id = first_id
        self.prev_hash = prev_hash
        self.broken_at: int | None = None
        self.claims: list[_Claim] = []

    def feed(self, event: AuditEvent) -> bool:
        """False once the chain is broken (stop feeding)."""
        r = self.report
        if event.id != self.expected_id:
            gap = f"missing: the chain jumps from event {self.expected_id - 1} to {event.id}"
            self._break(self.expected_id, gap if event.id > self.expected_id else f"out of order (found {event.id})")
            return False
        if event.prev_hash != self.prev_hash:
            self._break(event.id, f"does not link to event {event.id - 1} (removed, inserted or reordered events)")
            return False
        if event_digest(self.prev_hash, event) != event.hash:
            self._break(event.id, f"content does not match its hash (altered {event.action!r} event)")
            return False
        if r.first_id is None:
            r.first_id = event.id
        r.events += 1
        r.last_id, r.last_hash = event.id, event.hash
        if event.action in _SIGNED and event.outcome == "ok":
            self._check_signed(event)
        self.prev_hash = event.hash
        self.expected_id += 1
        return True

    def _break(self, event_id: int, message: str) -> None:
        self.broken_at = event_id
        self.report.problems.append(Problem(event_id, f"event {event_id}", message))

    def _check_signed(self, event: AuditEvent) -> None:
        kind, names, id_field, hash_field = _SIGNED[event.action]
        details = event.details or {}
        where = f"event {event.id}"
        self.report.signed_events += 1
        problem = signature_problem(self.key, kind, names, details)
        if problem:
            self.report.problems.append(Problem(event.id, where, f"{event.action}: {problem}"))
            return
        try:
            head_id, head_hash = int(details[id_field]), str(details[hash_field])
        except (KeyError, TypeError, ValueError):
            self.report.problems.append(Problem(event.id, where, f"{event.action}: malformed details"))
            return
        if head_id >= event.id:
            self.report.problems.append(Problem(event.id, where, f"{event.action} names a later event {head_id}"))
            return
        if head_id == event.id - 1:
            if head_hash != self.prev_hash.hex():
                self.report.problems.append(Problem(head_id, where, f"signed hash {head_hash[:16]}… of event {head_id} "
                                                    f"differs from the chain's {self.prev_hash.hex()[:16]}…: "
                                                    f"events up to {head_id} were rewritten"))
        else:
            self.claims.append(_Claim(head_id, head_hash, where))


def signature_problem(key: AuditPublicKey | None, kind: str, names: Iterable[str],
                      details: dict[str, Any]) -> str | None:
    """What is wrong with a signed statement kept as ``details``, or None."""
    if key is None:
        return "no audit public key to check the signature against"
    if details.get("key_fingerprint") != key.fingerprint:
        return f"signed by another key ({details.get('key_fingerprint')})"
    try:
        fields = {name: details[name] for name in names}
    except KeyError as exc:
        return f"missing field {exc.args[0]!r}"
    signature = details.get("signature")
    if not isinstance(signature, str) or not key.verify(kind, fields, signature):
        return "signature does not verify"
    return None


def check_claims(report: Report, walker: ChainWalker, lookup: Callable[[list[int]], dict[int, bytes]],
                 first_id: int = 1) -> None:
    """Signed claims about earlier events, checked against the (verified) chain from ``first_id``."""
    limit = walker.broken_at
    wanted = [c for c in walker.claims if c.head_id >= first_id and (limit is None or c.head_id < limit)]
    known = lookup(sorted({c.head_id for c in wanted}))
    for claim in wanted:
        actual = known.get(claim.head_id)
        if actual is None:
            report.problems.append(Problem(claim.head_id, claim.where,
                                           f"names event {claim.head_id}, which is not in the chain"))
        elif actual.hex() != claim.head_hash:
            report.problems.append(Problem(claim.head_id, claim.where, f"signed hash {claim.head_hash[:16]}… of event "
                                           f"{claim.head_id} differs from the chain's {actual.hex()[:16]}…: "
                                           f"events up to {claim.head_id} were rewritten"))


@dataclass(frozen=True)
class Anchor:
    """A well-formed, correctly signed line of the anchors file."""

    where: str
    record: dict[str, Any]

    @property
    def head_id(self) -> int:
        return int(self.record[_SIGNED[_ANCHOR_KINDS[self.record["type"]]][2]])

    @property
    def head_hash(self) -> str:
        return str(self.record[_SIGNED[_ANCHOR_KINDS[self.record["type"]]][3]])

    @property
    def event_id(self) -> int:
        """Its own (checkpoint or restored) event: the newest event it vouches for."""
        return int(self.record["event_id"])

    @property
    def event_hash(self) -> str:
        return str(self.record["event_hash"])


def anchor_file_lines(anchors_path: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """The anchors file as (where, record) pairs for :func:`effective_anchors`."""
    return [(f"{anchors_path.name} line {line.line}", line.record) for line in read_anchors(anchors_path)]


def effective_anchors(report: Report, key: AuditPublicKey | None,
                      lines: Iterable[tuple[str, dict[str, Any] | None]]) -> list[Anchor]:
    """The anchors still in force, oldest first.

    A ``restored`` line supersedes the earlier anchors past the checkpoint it returns to: those
    events were given up by the restore, which is itself signed and in the chain.
    """
    effective: list[Anchor] = []
    for where, record in lines:
        if record is None or record.get("type") not in _ANCHOR_KINDS:
            report.problems.append(Problem(None, where, "not an anchor record"))
            continue
        kind, names, id_field, _ = _SIGNED[_ANCHOR_KINDS[record["type"]]]
        problem = signature_problem(key, kind, names, record)
        if problem is None and (_int(record.get("event_id")) is None or not isinstance(record.get("event_hash"), str)
                                or _int(record.get(id_field)) is None):
            problem = "malformed anchor record"
        if problem:
            report.problems.append(Problem(None, where, problem))
            continue
        anchor = Anchor(where, record)
        report.anchors += 1
        if record["type"] == ANCHOR_RESTORED:
            report.restores += 1
            returned = [a for a in effective if a.record["type"] == ANCHOR_CHECKPOINT
                        and (a.head_id, a.head_hash) == (anchor.head_id, anchor.head_hash)]
            if not returned:
                report.problems.append(Problem(None, where, f"returns to event {anchor.head_id}, "
                                               "named by no earlier checkpoint"))
            else:
                kept = [a for a in effective if a.event_id <= returned[-1].event_id]
                report.superseded_anchors += len(effective) - len(kept)
                effective = kept
        effective.append(anchor)
    return effective


def match_anchors(report: Report, anchors: list[Anchor], lookup: Callable[[list[int]], dict[int, bytes]], *,
                  broken_at: int | None, first_id: int = 1, whole_chain: bool = True) -> None:
    """Each anchor's events must be in the chain with the hashes it names.

    On the whole chain, an anchor past the last event means events were cut from the end; in an
    export, events outside its range are simply not checked.
    """
    last_id = report.last_id or 0
    if anchors:
        report.newest_anchor_head = max(a.head_id for a in anchors)
    ids = {i for a in anchors for i in (a.head_id, a.event_id)
           if first_id <= i <= last_id and (broken_at is None or i < broken_at)}
    known = lookup(sorted(ids))
    for anchor in anchors:
        for event_id, expected in ((anchor.head_id, anchor.head_hash), (anchor.event_id, anchor.event_hash)):
            if (broken_at is not None and event_id >= broken_at) or event_id < first_id:
                continue  # past a broken link (already reported) or before an export's range
            if event_id > last_id:
                if whole_chain:
                    report.problems.append(Problem(last_id + 1, anchor.where,
                                                   f"names event {event_id} but the chain ends at event {last_id}: "
                                                   "events were removed from the end (cut tail)"))
                break
            actual = known.get(event_id)
            if actual is None or actual.hex() != expected:
                report.problems.append(Problem(event_id, anchor.where, f"event {event_id} does not match the anchor "
                                               "(hash differs: the chain was rewritten)"))
                break


def verify_database(session: Session, anchors_path: Path, key: AuditPublicKey | None) -> Report:
    """The whole chain in the database, its signed events and the anchors file."""
    report = Report(key_fingerprint=key.fingerprint if key else None)
    walker = ChainWalker(report, key)
    query = select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=1000)
    for event in session.scalars(query):
        if not walker.feed(event):
            break

    def lookup(ids: list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = session.execute(select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.id.in_(chunk)))
            found.update({row.id: row.hash for row in rows})
        return found

    check_claims(report, walker, lookup)
    anchors = effective_anchors(report, key, anchor_file_lines(anchors_path))
    match_anchors(report, anchors, lookup, broken_at=walker.broken_at)
    return report


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
