"""Webhooks: an event row written with the state change that causes it, delivered by any worker.

Each delivery is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` and leased, so that one worker
sends it when several run; it carries ``Kyso-Event-Id`` and ``Kyso-Signature: t=TIME,v1=HEX``
(HMAC-SHA256 over ``TIME.BODY`` with the relying system's webhook secret) and is retried with
exponential backoff; the rows are the delivery log. URLs must match the relying system's
allowlist by origin, and private, loopback or special-purpose addresses are refused unless
``KYSO_WEBHOOK_ALLOW_PRIVATE`` is set (no SSRF); each attempt checks the URL again against the
current allowlist and connects to the address it checked (see :mod:`webhook_targets`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, and_, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from broker.db.engine import read_connection, transaction
from broker.db.models import DeliveryState, RelyingSystem, SigningRequest, WebhookDelivery
from broker.errors import InvalidInput
from broker.lifecycle.clock import aware, now
from broker.lifecycle.payload import RequestPayload
from broker.lifecycle.webhook_targets import InvalidWebhookUrl, WebhookNotAllowed, WebhookTargetRefused, check_url
from broker.observability import metrics

__all__ = ["check_url", "deliver_due", "deliveries_for", "enqueue", "signature_header", "verify_signature"]

log = logging.getLogger("kyso.webhooks")
MAX_ATTEMPTS = 8
LEASE_SECONDS = 30


def signature_header(secret: str, timestamp: int, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: str, tolerance: int = 300) -> bool:
    """What a receiver does (used by the tests and documented for integrators)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature_header(secret, timestamp, body), header)


def enqueue(session: Session, request: SigningRequest) -> None:
    """Queue the event for a request that reached a final state (same transaction as the change)."""
    url = RequestPayload.of(request).webhook_url
    if not url or request.client_id is None:
        return
    rs = session.scalar(select(RelyingSystem).where(RelyingSystem.name == request.relying_system))
    if rs is None:
        return
    event_id = uuid.uuid4().hex
    body = json.dumps({"event_id": event_id, "type": f"request.{request.state.value}", "request_id": request.id,
                       "state": request.state.value, "verification_code": request.verification_code},
                      separators=(",", ":"))
    session.add(WebhookDelivery(id=event_id, request_id=request.id, relying_system_id=rs.id, url=str(url), body=body,
                                state=DeliveryState.PENDING, attempts=0, next_attempt_at=now()))


@dataclass(frozen=True)
class _Claim:
    id: str
    url: str
    body: str
    secret: str
    allowlist: tuple[str, ...]
    attempts: int
    lease_until: datetime


def deliver_due(factory: sessionmaker[Session], *, allow_private: bool, limit: int = 20) -> int:
    """Claim and send the deliveries that are due, one at a time; return how many were attempted."""
    with read_connection(factory) as connection:  # the common case, at every wake-up: nothing due, no write lock
        if connection.execute(_ANY_DUE, {"b_now": now()}).first() is None:
            return 0
    attempted = 0
    while attempted < limit:
        claim = _claim_next(factory)
        if claim is None:
            break
        attempted += 1
        status, error = _send(claim, allow_private)
        _record(factory, claim, status, error)
    return attempted


_ANY_DUE = select(WebhookDelivery.id).where(WebhookDelivery.state == DeliveryState.PENDING,
                                            WebhookDelivery.next_attempt_at <= bindparam("b_now")).limit(1)


def _due() -> ColumnElement[bool]:
    return and_(WebhookDelivery.state == DeliveryState.PENDING, WebhookDelivery.next_attempt_at <= now())


def _claim_next(factory: sessionmaker[Session]) -> _Claim | None:
    """Lease the oldest due delivery. ``FOR UPDATE SKIP LOCKED`` lets concurrent workers take
    different rows without waiting (on SQLite, ``BEGIN IMMEDIATE`` serialises the claim); the
    lease, a ``next_attempt_at`` in the future, keeps the row from the others once committed. A
    worker that dies mid-send leaves the lease to run out and the delivery is retried (receivers
    deduplicate on ``Kyso-Event-Id``)."""
    with transaction(factory) as session:
        delivery = session.scalars(
            select(WebhookDelivery)
            .where(_due())
            .order_by(WebhookDelivery.next_attempt_at).limit(1)
            .with_for_update(skip_locked=True)).first()
        if delivery is None:
            return None
        lease_until = now() + timedelta(seconds=LEASE_SECONDS)
        delivery.next_attempt_at = lease_until
        rs = session.get(RelyingSystem, delivery.relying_system_id)
        return _Claim(delivery.id, delivery.url, delivery.body, (rs.webhook_secret if rs else None) or "",
                      tuple(rs.webhook_allowlist if rs else ()), delivery.attempts, lease_until)


def _record(factory: sessionmaker[Session], claim: _Claim, status: int | None, error: str | None) -> None:
    """Write the attempt's outcome, unless the lease ran out and another worker took the row."""
    with transaction(factory) as session:
        delivery = session.get(WebhookDelivery, claim.id, with_for_update=True)
        if (delivery is None or delivery.state is not DeliveryState.PENDING
                or aware(delivery.next_attempt_at) != claim.lease_until):
            return
        delivery.attempts = claim.attempts + 1
        delivery.last_status, delivery.last_error = status, error
        if status is not None and 200 <= status < 300:
            delivery.state, delivery.delivered_at = DeliveryState.DELIVERED, now()
            outcome = "delivered"
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.state = DeliveryState.FAILED
            outcome = "failed"
        else:
            delivery.next_attempt_at = now() + timedelta(seconds=min(3600, 2 ** delivery.attempts))
            outcome = "refused" if error in _REFUSALS else "retry"
    metrics.record_webhook(outcome)


_REFUSALS = frozenset({InvalidWebhookUrl.code, WebhookNotAllowed.code, WebhookTargetRefused.code, InvalidInput.code})


def _send(claim: _Claim, allow_private: bool) -> tuple[int | None, str | None]:
    """One attempt; the error is a refusal's stable code or the transport error's name."""
    try:
        pinned = check_url(claim.url, claim.allowlist, allow_private=allow_private)
        timestamp = int(time.time())
        with httpx.Client(transport=pinned.transport(), timeout=10, follow_redirects=False, trust_env=False) as http:
            response = http.post(pinned.url, content=claim.body, headers={
                "Content-Type": "application/json", "Kyso-Event-Id": claim.id,
                "Kyso-Signature": signature_header(claim.secret, timestamp, claim.body)})
        return response.status_code, None if response.is_success else f"HTTP {response.status_code}"
    except InvalidInput as exc:
        return None, exc.code
    except httpx.HTTPError as exc:
        return None, type(exc).__name__


def deliveries_for(session: Session, request_id: str) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.request_id == request_id)
                                .order_by(WebhookDelivery.created_at)))
