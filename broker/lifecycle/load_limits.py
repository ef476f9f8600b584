"""Per relying system: a cap on new signing requests per minute and on requests still pending, and
on uploads: per minute, and the bytes and files it keeps stored.

Both are counted from the signing requests themselves, in the shared database, so they hold
across workers without a counter of their own; two workers racing at the edge may let one or
two requests past the limit, never more than the number of workers.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, func, select, true

from broker.db.models import Document, OAuthClient, RelyingSystem, RequestState, SigningRequest
from broker.errors import KysoError
from broker.lifecycle.signing_requests import aware, now
from broker.settings import Settings

WINDOW = timedelta(minutes=1)


class RateLimited(KysoError):
    """Too many requests for now; ``retry_after`` seconds is when to try again."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyPendingForSystem(RateLimited):
    code = "too_many_pending"


class UploadQuotaExceeded(RateLimited):
    """Stored uploads are at the relying system's cap: they free up as requests end and retention runs."""

    code = "upload_quota_exceeded"


_TABLE = SigningRequest.__table__
_IS_RECENT = (_TABLE.c.relying_system == bindparam("relying_system"), _TABLE.c.created_at > bindparam("since"))
_RECENT = select(func.count().label("n")).where(*_IS_RECENT).subquery()
_PENDING = select(func.count().label("n")).where(
    _TABLE.c.relying_system == bindparam("relying_system"), _TABLE.c.state == RequestState.PENDING,
    _TABLE.c.expires_at > bindparam("moment")).subquery()
# Built once: every new signing request runs it, on the connection (both counts in one round trip).
_ADMISSION = select(_RECENT.c.n.label("recent"), _PENDING.c.n.label("pending")).select_from(
    _RECENT.join(_PENDING, true()))
_OLDEST_RECENT = select(func.min(_TABLE.c.created_at)).where(*_IS_RECENT)


def admit(connection: Connection, settings: Settings, relying_system: str) -> None:
    """Refuse a new signing request for ``relying_system`` when it is over one of its limits."""
    moment = now()
    found = connection.execute(_ADMISSION, {"relying_system": relying_system, "since": moment - WINDOW,
                                            "moment": moment}).one()
    if found.recent >= settings.rate_limit_per_minute:
        oldest = connection.execute(_OLDEST_RECENT, {"relying_system": relying_system, "since": moment - WINDOW})
        raise RateLimited(f"at most {settings.rate_limit_per_minute} signing requests a minute",
                          _retry_after(oldest.scalar(), moment))
    if found.pending >= settings.max_pending_per_relying_system:
        raise TooManyPendingForSystem(
            f"{found.pending} requests are waiting for their signers; at most {settings.max_pending_per_relying_system}",
            settings.pending_retry_seconds)


def _retry_after(oldest: datetime | None, moment: datetime) -> int:
    """When the oldest request of the window leaves it (a moment from now if it just did)."""
    return math.ceil((aware(oldest) + WINDOW - moment).total_seconds()) if oldest is not None else 1


_DOCS, _CLIENTS, _SYSTEMS = Document.__table__, OAuthClient.__table__, RelyingSystem.__table__
_OF_SYSTEM = _DOCS.join(_CLIENTS, _CLIENTS.c.client_id == _DOCS.c.client_id).join(
    _SYSTEMS, _SYSTEMS.c.id == _CLIENTS.c.relying_system_id)
_IS_RECENT_UPLOAD = (_SYSTEMS.c.name == bindparam("relying_system"), _DOCS.c.created_at > bindparam("since"))
_STORED = select(func.count().label("n"), func.coalesce(func.sum(_DOCS.c.size), 0).label("bytes")).select_from(
    _OF_SYSTEM).where(_SYSTEMS.c.name == bindparam("relying_system"), _DOCS.c.deleted_at.is_(None))
_RECENT_UPLOADS = select(func.count().label("n")).select_from(_OF_SYSTEM).where(*_IS_RECENT_UPLOAD).subquery()
_STORED_NOW = _STORED.subquery()
# Built once, run on the connection: every upload runs one of them before its body is read, then ``_STORED``.
_UPLOAD_ADMISSION = select(_RECENT_UPLOADS.c.n.label("recent"), _STORED_NOW.c.n.label("count"),
                           _STORED_NOW.c.bytes.label("bytes")).select_from(_RECENT_UPLOADS.join(_STORED_NOW, true()))
_OLDEST_RECENT_UPLOAD = select(func.min(_DOCS.c.created_at)).select_from(_OF_SYSTEM).where(*_IS_RECENT_UPLOAD)
UPLOAD_RETRY_SECONDS = 300


def admit_upload(connection: Connection, settings: Settings, relying_system: str, size: int, *,
                 counted: bool = False) -> None:
    """Refuse an upload of ``size`` bytes for ``relying_system`` when it is over its upload limits.

    Checked before the body is read (``size`` as declared, else 0) and again once it is on disk
    (``counted``: the upload's own row is already among the stored ones).
    """
    moment = now()
    if counted:
        count, stored = stored_uploads(connection, relying_system)
    else:
        found = connection.execute(_UPLOAD_ADMISSION, {"relying_system": relying_system,
                                                       "since": moment - WINDOW}).one()
        if found.recent >= settings.rate_limit_per_minute:
            oldest = connection.execute(_OLDEST_RECENT_UPLOAD, {"relying_system": relying_system,
                                                                "since": moment - WINDOW})
            raise RateLimited(f"at most {settings.rate_limit_per_minute} uploads a minute",
                              _retry_after(oldest.scalar(), moment))
        count, stored = int(found.count) + 1, int(found.bytes) + size
    if count > settings.max_uploads_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_uploads_per_relying_system} uploaded documents stored",
                                  UPLOAD_RETRY_SECONDS)
    if stored > settings.max_upload_bytes_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_upload_bytes_per_relying_system} bytes of uploaded "
                                  "documents stored", UPLOAD_RETRY_SECONDS)


def stored_uploads(connection: Connection, relying_system: str) -> tuple[int, int]:
    """The uploads ``relying_system`` keeps stored: how many, how many bytes."""
    count, stored = connection.execute(_STORED, {"relying_system": relying_system}).one()
    return int(count), int(stored)
