"""Housekeeping of the blob dir: personal data is kept no longer than it is needed.

A request's work files go when it ends without signing (cancelled, rejected, expired, failed).
Signed documents are kept ``document_retention_days`` after their request ends, uploads as long
after the upload or the end of the last request that used them; then they are deleted, audited
as ``document.delete``, and answer 410 ``document_gone``.

Run by every signing worker and by ``kyso housekeeping``: idempotent, and safe with several
workers. Files are deleted first (deleting twice is harmless, and a crash leaves nothing the next
run does not take up again), then the row moves on by a conditional update, and only the worker
whose update won counts it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from broker import audit, clients
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import FINAL_STATES, Document, RequestState, SigningRequest
from broker.lifecycle import load_limits, signing_requests, uploads
from broker.lifecycle.payload import RequestPayload
from broker.settings import Settings

ACTION = "document.delete"
BATCH = 200
"""Rows looked at per step and run: a run stays short; a backlog is worked off over a few runs."""
AUDITED_IDS = 50

LIVE, KEPT, GONE = "live", "kept", "gone"


@dataclass
class Swept:
    """What one run deleted (only the rows this run's conditional updates won)."""

    expired: int = 0
    unsigned: int = 0
    """Requests that ended without signing: their work files."""
    signed_inputs: int = 0
    """Signed requests: their work files besides the signed documents."""
    signed: int = 0
    """Signed requests past retention: their signed documents."""
    uploads: int = 0
    files: int = 0
    bytes: int = 0
    requests: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.unsigned or self.signed_inputs or self.signed or self.uploads)


def sweep(factory: sessionmaker[Session], settings: Settings, actor: Actor, *, moment: datetime | None = None) -> Swept:
    """One housekeeping run; ``moment`` (default now) is when retention is measured from."""
    moment = moment or signing_requests.now()
    cutoff = moment - timedelta(days=settings.document_retention_days)
    blobs = settings.blobs.resolve()
    swept = Swept()
    swept.expired = _expire_overdue(factory, actor)
    _ended(factory, blobs, moment, swept)
    _signed_past_retention(factory, blobs, cutoff, swept)
    _uploads_past_retention(factory, blobs, moment, cutoff, swept)
    if swept.anything:
        details: dict[str, Any] = {k: v for k, v in asdict(swept).items() if k not in ("requests", "documents", "expired")}
        details.update(requests=swept.requests[:AUDITED_IDS], documents=swept.documents[:AUDITED_IDS],
                       retention_days=settings.document_retention_days)
        with transaction(factory) as session:
            audit.record(session, actor, ACTION, target_type="blobs", details=details)
    with transaction(factory) as session:  # expired access tokens (refused already), a batch a run
        clients.purge_expired_tokens(session, actor, signing_requests.now())
    return swept


def _expire_overdue(factory: sessionmaker[Session], actor: Actor) -> int:
    """Pending requests whose time ran out but that nobody looked at since: expired (audited), so
    that their work files go too."""
    with read_transaction(factory) as session:
        overdue = list(session.scalars(select(SigningRequest.id).where(
            SigningRequest.blobs == LIVE, SigningRequest.state == RequestState.PENDING,
            SigningRequest.expires_at <= signing_requests.now()).limit(BATCH)))
    expired = 0
    for request_id in overdue:
        with transaction(factory) as session:
            expired += signing_requests.expire_if_due(session, actor, signing_requests.get(session, request_id))
    return expired


def _ended(factory: sessionmaker[Session], blobs: Path, moment: datetime, swept: Swept) -> None:
    with read_transaction(factory) as session:
        rows = session.execute(select(SigningRequest.id, SigningRequest.state, SigningRequest.payload).where(
            SigningRequest.blobs == LIVE, SigningRequest.state.in_(FINAL_STATES)).limit(BATCH)).all()
    for request_id, state, column in rows:
        payload = RequestPayload.from_column(column)
        signed = state is RequestState.SIGNED
        keep = {_inside(blobs, output) for output in payload.outputs} if signed else set()
        files, size = _remove_tree(_inside(blobs, payload.work), keep - {None})
        upload_ids = [upload for upload in payload.uploads if upload]
        with transaction(factory) as session:
            won = session.execute(update(SigningRequest).where(SigningRequest.id == request_id,
                                                               SigningRequest.blobs == LIVE)
                                  .values(blobs=KEPT if signed else GONE, ended_at=moment)).rowcount == 1  # type: ignore[attr-defined]
            if won:  # their retention counts from this request's end
                uploads.hold(session, upload_ids, moment)
        if won:
            swept.files, swept.bytes = swept.files + files, swept.bytes + size
            if signed:
                swept.signed_inputs += 1
            else:
                swept.unsigned += 1
                swept.requests.append(request_id)


def _signed_past_retention(factory: sessionmaker[Session], blobs: Path, cutoff: datetime, swept: Swept) -> None:
    with read_transaction(factory) as session:
        rows = session.execute(select(SigningRequest.id, SigningRequest.payload).where(
            SigningRequest.blobs == KEPT, SigningRequest.ended_at < cutoff).limit(BATCH)).all()
    for request_id, column in rows:
        files, size = _remove_tree(_inside(blobs, RequestPayload.from_column(column).work), set())
        with transaction(factory) as session:
            won = session.execute(update(SigningRequest).where(SigningRequest.id == request_id,
                                                               SigningRequest.blobs == KEPT)
                                  .values(blobs=GONE)).rowcount == 1  # type: ignore[attr-defined]
        if won:
            swept.signed += 1
            swept.files, swept.bytes = swept.files + files, swept.bytes + size
            swept.requests.append(request_id)


def _uploads_past_retention(factory: sessionmaker[Session], blobs: Path, moment: datetime, cutoff: datetime,
                            swept: Swept) -> None:
    with read_transaction(factory) as session:
        rows = session.execute(select(Document.id, Document.path, Document.client_id, Document.size).where(
            Document.deleted_at.is_(None), Document.retained_from < cutoff).limit(BATCH)).all()
    for document_id, stored, client_id, registered_size in rows:
        path = _inside(blobs, stored)
        size = _size(path) if path is not None else 0
        if path is not None:
            path.unlink(missing_ok=True)  # a request that signs it already holds its own link
        with transaction(factory) as session:
            # Still past retention: a request that took it up in between keeps the row (its file is
            # gone; the next request answers document_gone, the next run marks it deleted).
            won = session.execute(update(Document).where(Document.id == document_id, Document.deleted_at.is_(None),
                                                         Document.retained_from < cutoff)
                                  .values(deleted_at=moment)).rowcount == 1  # type: ignore[attr-defined]
            if won:  # no longer among its relying system's stored uploads
                load_limits.uncount_upload(session.connection(), client_id, registered_size)
        if won:
            swept.uploads += 1
            swept.files += 1 if size else 0
            swept.bytes += size
            swept.documents.append(document_id)


def _inside(blobs: Path, stored: object) -> Path | None:
    """A path from the database, only if it lies in the blob dir: housekeeping deletes nothing else."""
    if not stored:
        return None
    path = Path(str(stored)).resolve()
    return path if path.is_relative_to(blobs) and path != blobs else None


def _remove_tree(root: Path | None, keep: set[Path | None]) -> tuple[int, int]:
    """Delete ``root`` and what it holds, except ``keep``; the files and bytes deleted."""
    if root is None or not root.is_dir():
        return 0, 0
    files = size = 0
    for folder, _, names in os.walk(root):  # another worker may delete the same tree: errors are skipped
        for name in names:
            path = Path(folder) / name
            if path in keep:
                continue
            found = _size(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            files, size = files + 1, size + found
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return files, size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
