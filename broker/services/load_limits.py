"""Per relying system: a cap on new signing requests per minute and on requests still pending.

Both are counted from the signing requests themselves, in the shared database, so they hold
across workers without a counter of their own; two workers racing at the edge may let one or
two requests past the limit, never more than the number of workers.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import func, select
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


def admit(session: Session, settings: Settings, relying_system: str) -> None:
    """Refuse a new signing request for ``relying_system`` when it is over one of its limits."""
    moment = now()
    since = moment - WINDOW
    recent = session.execute(
        select(func.count(), func.min(SigningRequest.created_at))
        .where(SigningRequest.relying_system == relying_system, SigningRequest.created_at > since)
    ).one()
    if recent[0] >= settings.rate_limit_per_minute:
        retry = math.ceil((aware(recent[1]) + WINDOW - moment).total_seconds())
        raise RateLimited(f"at most {settings.rate_limit_per_minute} signing requests a minute", retry)
    pending = session.scalar(
        select(func.count()).select_from(SigningRequest)
        .where(SigningRequest.relying_system == relying_system, SigningRequest.state == RequestState.PENDING,
               SigningRequest.expires_at > moment)
    )
    if (pending or 0) >= settings.max_pending_per_relying_system:
        raise TooManyPendingForSystem(
            f"{pending} requests are waiting for their signers; at most {settings.max_pending_per_relying_system}",
            settings.pending_retry_seconds)
