"""Per relying system: a cap on new signing requests per minute and on requests still pending, and
on uploads: per minute, and the bytes and files it keeps stored.

Requests are counted from the signing requests themselves, in the shared database, so the caps
hold across workers without a counter of their own; two workers racing at the edge may let one or
two requests past the limit, never more than the number of workers. Stored uploads are counted on
their relying system's row as each is registered and deleted: checking an upload reads one row,
however many the system keeps.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, func, select, true, update

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
_THE_SYSTEM = _SYSTEMS.c.name == bindparam("relying_system")
# Built once, run on the connection: every upload runs it before its body is read. The stored uploads
# are the system's counters (one row), not a sum over what it keeps stored.
_UPLOAD_ADMISSION = select(
    select(func.count()).select_from(_OF_SYSTEM).where(*_IS_RECENT_UPLOAD).scalar_subquery().label("recent"),
    _SYSTEMS.c.stored_uploads.label("count"), _SYSTEMS.c.stored_upload_bytes.label("bytes")).where(_THE_SYSTEM)
_OLDEST_RECENT_UPLOAD = select(func.min(_DOCS.c.created_at)).select_from(_OF_SYSTEM).where(*_IS_RECENT_UPLOAD)
_COUNT_UPLOAD = (update(_SYSTEMS).where(_SYSTEMS.c.name == bindparam("b_relying_system"))
                 .values(stored_uploads=_SYSTEMS.c.stored_uploads + 1,
                         stored_upload_bytes=_SYSTEMS.c.stored_upload_bytes + bindparam("b_size"))
                 .returning(_SYSTEMS.c.stored_uploads, _SYSTEMS.c.stored_upload_bytes))
_UNCOUNT_UPLOAD = (update(_SYSTEMS)
                   .where(_SYSTEMS.c.id == select(_CLIENTS.c.relying_system_id)
                          .where(_CLIENTS.c.client_id == bindparam("b_client_id")).scalar_subquery())
                   .values(stored_uploads=_SYSTEMS.c.stored_uploads - 1,
                           stored_upload_bytes=_SYSTEMS.c.stored_upload_bytes - bindparam("b_size")))
_STORED = select(_SYSTEMS.c.stored_uploads, _SYSTEMS.c.stored_upload_bytes).where(_THE_SYSTEM)
UPLOAD_RETRY_SECONDS = 300


def admit_upload(connection: Connection, settings: Settings, relying_system: str, size: int) -> None:
    """Refuse an upload of ``size`` bytes (as declared, else 0) for ``relying_system`` when it is over its
    upload limits: checked before the body is read; :func:`count_upload` checks again once it is on disk."""
    moment = now()
    found = connection.execute(_UPLOAD_ADMISSION, {"relying_system": relying_system, "since": moment - WINDOW}).one()
    if found.recent >= settings.rate_limit_per_minute:
        oldest = connection.execute(_OLDEST_RECENT_UPLOAD, {"relying_system": relying_system, "since": moment - WINDOW})
        raise RateLimited(f"at most {settings.rate_limit_per_minute} uploads a minute",
                          _retry_after(oldest.scalar(), moment))
    _check_stored(settings, int(found.count) + 1, int(found.bytes) + size)


def count_upload(connection: Connection, settings: Settings, relying_system: str, size: int) -> None:
    """Count a registered upload of ``size`` bytes among ``relying_system``'s stored ones, in the
    transaction that registers it; over a cap it raises, and that transaction must roll back (the
    count with it). The system's row stays locked until then: concurrent uploads cannot pass the cap."""
    count, stored = connection.execute(_COUNT_UPLOAD, {"b_relying_system": relying_system, "b_size": size}).one()
    _check_stored(settings, int(count), int(stored))


def uncount_upload(connection: Connection, client_id: str, size: int) -> None:
    """An upload of ``client_id``'s, of ``size`` bytes as registered, is no longer stored."""
    connection.execute(_UNCOUNT_UPLOAD, {"b_client_id": client_id, "b_size": size})


def _check_stored(settings: Settings, count: int, stored: int) -> None:
    if count > settings.max_uploads_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_uploads_per_relying_system} uploaded documents stored",
                                  UPLOAD_RETRY_SECONDS)
    if stored > settings.max_upload_bytes_per_relying_system:
        raise UploadQuotaExceeded(f"at most {settings.max_upload_bytes_per_relying_system} bytes of uploaded "
                                  "documents stored", UPLOAD_RETRY_SECONDS)


def stored_uploads(connection: Connection, relying_system: str) -> tuple[int, int]:
    """The uploads ``relying_system`` keeps stored, as counted: how many, how many bytes."""
    count, stored = connection.execute(_STORED, {"relying_system": relying_system}).one()
    return int(count), int(stored)
