"""Per relying system: a cap on new signing requests per minute and on requests still pending.

Both are counted from the signing requests themselves, in the shared database, so they hold
across workers without a counter of their own; two workers racing at the edge may let one or
two requests past the limit, never more than the number of workers.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from broker.db.models import RequestState, SigningRequest
from broker.errors import KysoError
from broker.services.signing_requests import aware, now
from broker.settings import Settings

WINDOW = timedelta(minutes=1)


class RateLimited(KysoError):
    """Too many requests for now; ``retry_after`` seconds is when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyPendingForSystem(RateLimited):
    code = "too_many_pending"


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
