"""Per relying system: a cap on new signing requests per minute and on requests still pending, and
on uploads: per minute, and the bytes and files it keeps stored.

Both are counted from the signing requests themselves, in the shared database, so they hold
across workers without a counter of their own; two workers racing at the edge may let one or
two requests past the limit, never more than the number of workers.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

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
# Built once: every new signing request runs both, on the connection.
_RECENT = select(func.count(), func.min(_TABLE.c.created_at)).where(
    _TABLE.c.relying_system == bindparam("relying_system"), _TABLE.c.created_at > bindparam("since"))
_PENDING = select(func.count()).where(
    _TABLE.c.relying_system == bindparam("relying_system"), _TABLE.c.state == RequestState.PENDING,
    _TABLE.c.expires_at > bindparam("moment"))


def admit(session: Session, settings: Settings, relying_system: str) -> None:
    """Refuse a new signing request for ``relying_system`` when it is over one of its limits."""
    moment = now()
    connection = session.connection()
    recent = connection.execute(_RECENT, {"relying_system": relying_system, "since": moment - WINDOW}).one()
    if recent[0] >= settings.rate_limit_per_minute:
        retry = math.ceil((aware(recent[1]) + WINDOW - moment).total_seconds())
        raise RateLimited(f"at most {settings.rate_limit_per_minute} signing requests a minute", retry)
    pending = connection.execute(_PENDING, {"relying_system": relying_system, "moment": moment}).scalar()
    if (pending or 0) >= settings.max_pending_per_relying_system:
        raise TooManyPendingForSystem(
            f"{pending} requests are waiting for their signers; at most {settings.max_pending_per_relying_system}",
            settings.pending_retry_seconds)


_DOCS, _CLIENTS, _SYSTEMS = Document.__table__, OAuthClient.__table__, RelyingSystem.__table__
_OF_SYSTEM = _DOCS.join(_CLIENTS, _CLIENTS.c.client_id == _DOCS.c.client_id).join(
    _SYSTEMS, _SYSTEMS.c.id == _CLIENTS.c.relying_system_id)
_UPLOADS_RECENT = select(func.count(), func.min(_DOCS.c.created_at)).select_from(_OF_SYSTEM).where(
    _SYSTEMS.c.name == bindparam("relying_system"), _DOCS.c.created_at > bindparam("since"))
_UPLOADS_STORED = select(func.count(), func.coalesce(func.sum(_DOCS.c.size), 0)).select_from(_OF_SYSTEM).where(
    _SYSTEMS.c.name == bindparam("relying_system"), _DOCS.c.deleted_at.is_(None))
UPLOAD_RETRY_SECONDS = 300


def admit_upload(session: Session, settings: Settings, relying_system: str, size: int, *, counted: bool = False) -> None:
    """Refuse an upload of ``size`` bytes for ``relying_system`` when it is over its upload limits.

    Checked before the body is read (``size`` as declared, else 0) and again once it is on disk
    (``counted``: the upload's own row is already among the stored ones).
    """
    moment = now()
    connection = session.connection()
    if not counted:
        recent = connection.execute(_UPLOADS_RECENT, {"relying_system": relying_system, "since": moment - WINDOW}).one()
        if recent[0] >= settings.rate_limit_per_minute:
            retry = math.ceil((aware(recent[1]) + WINDOW - moment).total_seconds())
            raise RateLimited(f"at most {settings.rate_limit_per_minute} uploads a minute", retry)
    count, stored = stored_uploads(session, relying_system)
    if not counted:
        count, stored = count + 1, stored + size
    if count > settings.max_uploads_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_uploads_per_relying_system} uploaded documents stored",
                                  UPLOAD_RETRY_SECONDS)
    if stored > settings.max_upload_bytes_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_upload_bytes_per_relying_system} bytes of uploaded "
                                  "documents stored", UPLOAD_RETRY_SECONDS)


def stored_uploads(session: Session, relying_system: str) -> tuple[int, int]:
    """The uploads ``relying_system`` keeps stored: how many, how many bytes."""
    count, stored = session.connection().execute(_UPLOADS_STORED, {"relying_system": relying_system}).one()
    return int(count), int(stored)
