"""``kyso audit export``: a time range of the chain as JSON lines an auditor can verify offline.

Line 1 is a header with the audit public key (PEM); then every event with all the fields its hash
covers; then the anchors in force within the range; last a trailer signed by the audit key, so a
truncated or edited export is detected without the database or the HSM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker.audit import GENESIS
from broker.audit.key import AUDIT_KEY_ALGORITHM, AUDIT_KEY_ID, AuditPublicKey, ensure_audit_key, sign_statement
from broker.audit.verify import (
    ChainWalker,
    Problem,
    Report,
    anchor_file_lines,
    check_claims,
    effective_anchors,
    match_anchors,
    signature_problem,
)
from broker.db.engine import read_transaction, transaction
from broker.db.models import AuditEvent
from broker.errors import KysoError
from hsm import Hsm

FORMAT = "kyso-audit-export"
EXPORT_KIND = "kyso.audit.export"
TRAILER_FIELDS = ("first_id", "last_id", "prev_hash", "last_hash", "count", "since", "until", "exported_at")


class InvalidExport(KysoError):
    code = "invalid_export"


@dataclass(frozen=True)
class ExportSummary:
    count: int
    first_id: int | None
    last_id: int | None
    anchors: int
    key_fingerprint: str


def export(sessions: sessionmaker[Session], hsm: Hsm, anchors_path: Path, out: IO[str],
           since: datetime | None, until: datetime | None) -> ExportSummary:
    """Events with ``since <= at < until`` (and every event between the first and the last of them)."""
    # Stored times are UTC (SQLite keeps them without a zone): compare in UTC.
    since = since.astimezone(timezone.utc) if since else None
    until = until.astimezone(timezone.utc) if until else None
    with transaction(sessions) as session:
        audit.lock_chain(session)  # the audit key is made at most once
        key = ensure_audit_key(hsm)
    with read_transaction(sessions) as session:
        bounds = select(func.min(AuditEvent.id), func.max(AuditEvent.id))
        if since is not None:
            bounds = bounds.where(AuditEvent.at >= since)
        if until is not None:
            bounds = bounds.where(AuditEvent.at < until)
        first_id, last_id = session.execute(bounds).one()
        prev_hash = GENESIS
        if first_id is not None:
            prev_hash = session.scalar(select(AuditEvent.prev_hash).where(AuditEvent.id == first_id)) or GENESIS
        header = {
            "type": "header", "format": FORMAT, "v": 1, "since": _iso(since), "until": _iso(until),
            "first_id": first_id, "last_id": last_id, "prev_hash": prev_hash.hex(),
            "audit_key": {"key_id": AUDIT_KEY_ID, "algorithm": AUDIT_KEY_ALGORITHM.value,
                          "fingerprint": key.fingerprint, "public_key_pem": key.pem()},
        }
        _write(out, header)
        count, last_hash = 0, prev_hash
        if first_id is not None:
            query = (select(AuditEvent).where(AuditEvent.id.between(first_id, last_id))
                     .order_by(AuditEvent.id).execution_options(yield_per=1000))
            for event in session.scalars(query):
                _write(out, event_line(event))
                count, last_hash = count + 1, event.hash
    anchors = 0
    if first_id is not None:
        for anchor in effective_anchors(Report(), key, anchor_file_lines(anchors_path)):
            if first_id <= anchor.head_id and anchor.event_id <= last_id:
                _write(out, {**anchor.record, "type": "anchor", "anchor_type": anchor.record["type"],
                             "where": anchor.where})
                anchors += 1
    fields = {"first_id": first_id, "last_id": last_id, "prev_hash": prev_hash.hex(), "last_hash": last_hash.hex(),
              "count": count, "since": _iso(since), "until": _iso(until),
              "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    signed = sign_statement(hsm, EXPORT_KIND, fields)
    _write(out, {"type": "trailer", **signed.details()})
    return ExportSummary(count, first_id, last_id, anchors, key.fingerprint)


def event_line(event: AuditEvent) -> dict[str, Any]:
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=timezone.utc)
    return {
        "type": "event", "id": event.id, "at": at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
        "actor": event.actor, "action": event.action, "outcome": event.outcome, "target_type": event.target_type,
        "target_id": event.target_id, "details": event.details, "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
    }


def verify_export(path: Path, expected_key: AuditPublicKey | None = None) -> Report:
    """Check an export without the database or the HSM.

    The key comes from the export's header; pass ``expected_key`` (obtained out of band) to pin it.
    """
    lines = _read_lines(path)
    header = next(lines, None)
    if header is None or header.get("type") != "header" or header.get("format") != FORMAT:
        raise InvalidExport(f"{path.name} is not a kyso audit export")
    try:
        key = AuditPublicKey.from_pem(header["audit_key"]["public_key_pem"])
        first_id = header["first_id"]
        prev_hash = bytes.fromhex(header["prev_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidExport(f"{path.name}: malformed header") from exc
    report = Report(key_fingerprint=key.fingerprint)
    if expected_key is not None and expected_key.fingerprint != key.fingerprint:
        report.problems.append(Problem(None, "header", f"audit key {key.fingerprint} is not the expected "
                                        f"{expected_key.fingerprint}"))
        key = expected_key
    walker = ChainWalker(report, key, first_id=first_id or 1, prev_hash=prev_hash)
    hashes: dict[int, bytes] = {}
    anchors: list[dict[str, Any]] = []
    trailer: dict[str, Any] | None = None
    count, last_id, last_seen, broken = 0, None, prev_hash, False
    for number, record in enumerate(lines, start=2):
        kind = record.get("type")
        if trailer is not None:
            report.problems.append(Problem(None, f"line {number}", "data after the trailer"))
            break
        if kind == "event":
            count += 1
            try:
                event = _event_from_line(record)
            except (KeyError, TypeError, ValueError):
                if not broken:
                    report.problems.append(Problem(walker.expected_id, f"line {number}", "malformed event"))
                    walker.broken_at, broken = walker.expected_id, True
                continue
            last_id, last_seen = event.id, event.hash
            if not broken and walker.feed(event):
                hashes[event.id] = event.hash
            else:
                broken = True
        elif kind == "anchor":
            anchors.append({**record, "type": record.get("anchor_type")})
        elif kind == "trailer":
            trailer = record
        else:
            report.problems.append(Problem(None, f"line {number}", f"unknown line type {kind!r}"))

    def lookup(ids: list[int]) -> dict[int, bytes]:
        return {i: hashes[i] for i in ids if i in hashes}

    check_claims(report, walker, lookup, first_id=first_id or 1)
    in_force = effective_anchors(report, key, [(str(a.get("where") or "export anchor"), a) for a in anchors])
    match_anchors(report, in_force, lookup, broken_at=walker.broken_at, first_id=first_id or 1, whole_chain=False)
    _check_trailer(report, key, trailer, count, header, last_id, last_seen)
    return report


def _check_trailer(report: Report, key: AuditPublicKey, trailer: dict[str, Any] | None, count: int,
                   header: dict[str, Any], last_id: int | None, last_hash: bytes) -> None:
    if trailer is None:
        report.problems.append(Problem(None, "trailer", "missing: the export is truncated"))
        return
    problem = signature_problem(key, EXPORT_KIND, TRAILER_FIELDS, trailer)
    if problem:
        report.problems.append(Problem(None, "trailer", problem))
        return
    expected = {"count": count, "first_id": header["first_id"], "last_id": last_id, "prev_hash": header["prev_hash"],
                "last_hash": last_hash.hex()}
    for name, value in expected.items():
        if trailer.get(name) != value:
            report.problems.append(Problem(None, "trailer", f"{name} is {trailer.get(name)!r}, the export has "
                                            f"{value!r} (events added or removed)"))


def _event_from_line(record: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=int(record["id"]), at=datetime.fromisoformat(record["at"]), actor=record["actor"],
        action=record["action"], outcome=record["outcome"], target_type=record["target_type"],
        target_id=record["target_id"], details=record["details"], prev_hash=bytes.fromhex(record["prev_hash"]),
        hash=bytes.fromhex(record["hash"]),
    )


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidExport(f"{path.name} line {number} is not JSON") from exc
            if not isinstance(record, dict):
                raise InvalidExport(f"{path.name} line {number} is not a JSON object")
            yield record


def _write(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None
