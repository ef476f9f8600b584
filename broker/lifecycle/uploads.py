"""Documents a relying system uploads to sign later: streamed to 0600 blobs in 0700 directories,
counted against its load limits, kept while a request needs them (housekeeping deletes them after)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session, sessionmaker

from broker.clients import ClientContext
from broker.db.engine import read_connection, transaction
from broker.db.models import Document
from broker.errors import DocumentGone, InvalidInput, NotFound, TooLarge
from broker.lifecycle import load_limits
from broker.settings import Settings


class DocumentTooLarge(TooLarge):
    code = "document_too_large"


def private_dir(path: Path) -> Path:
    """A blob directory 0700, whatever the umask (mkdir's mode is masked by it; chmod is not)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except PermissionError:  # a shared mount point owned by another account: what kyso creates inside is 0700
        pass
    return path


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 (the umask does not apply to os.open's mode after a chmod)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)


def upload_target(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext,
                  declared_size: int = 0) -> tuple[str, Path]:
    """Admit an upload under the relying system's load limits, then create its empty 0600 file."""
    ctx.require("sign")
    with read_connection(factory) as connection:  # one statement: no transaction around it
        load_limits.admit_upload(connection, settings, ctx.relying_system, declared_size)
    private_dir(settings.blobs)
    folder = private_dir(settings.blobs / "documents")
    document_id = uuid.uuid4().hex
    private_file(folder / document_id)
    return document_id, folder / document_id


def register_upload(factory: sessionmaker[Session], ctx: ClientContext, document_id: str, path: Path, size: int,
                    sha256_hex: str, media_type: str, settings: Settings) -> Document:
    """Record an upload streamed to ``path`` and count it among its relying system's stored uploads,
    checked again against their caps with its real size (a body without Content-Length was admitted as
    empty); a refused one leaves neither row, count nor file."""
    ctx.require("sign")
    if size == 0:
        path.unlink(missing_ok=True)
        raise InvalidInput("the document is empty")
    try:
        with transaction(factory) as session:
            document = Document(id=document_id, client_id=ctx.client_id, path=str(path), media_type=media_type[:64],
                                size=size, sha256=sha256_hex)
            session.add(document)
            session.flush()
            load_limits.count_upload(session.connection(), settings, ctx.relying_system, size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return document


def document(session: Session, ctx: ClientContext, document_id: str) -> Document:
    document = session.get(Document, document_id)
    if document is None or document.client_id != ctx.client_id:
        raise NotFound(f"no document {document_id!r}")
    if document.deleted_at is not None:
        raise DocumentGone(f"document {document_id} was deleted after its retention period")
    return document


def hold(session: Session, document_ids: list[str], until: Any) -> None:
    """Keep these uploads at least until ``until``: a new request's until it can end, then housekeeping's
    until that request's end (their retention counts from there)."""
    if document_ids:
        session.connection().execute(_HOLD, {"b_ids": document_ids, "b_until": until})


_DOCUMENTS = Document.__table__
# Built once, run on the connection: every request made of uploads runs it.
_HOLD = (update(_DOCUMENTS).where(_DOCUMENTS.c.id.in_(bindparam("b_ids", expanding=True)),
                                  _DOCUMENTS.c.retained_from < bindparam("b_until"))
         .values(retained_from=bindparam("b_until")))


async def store(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext, chunks: AsyncIterator[bytes],
                declared: int, media_type: str) -> Document:
    """Stream a document to its blob under the relying system's limits, counted as it arrives."""
    if declared > settings.max_document_bytes:
        raise DocumentTooLarge(f"documents are limited to {settings.max_document_bytes} bytes")
    document_id, path = await anyio.to_thread.run_sync(upload_target, factory, settings, ctx, declared)
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > settings.max_document_bytes:
                    raise DocumentTooLarge(f"documents are limited to {settings.max_document_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        return await anyio.to_thread.run_sync(register_upload, factory, ctx, document_id, path, size,
                                              digest.hexdigest(), media_type, settings)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
