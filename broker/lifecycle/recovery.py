"""What a dead worker or a vanished client left behind: after a crash, never sign twice.

A reserved hash may have been signed by the HSM just before its worker died, so it is never
authorised again: after ``reservation_timeout_seconds`` the request ends ``failed`` with
``outcome_unknown``, audited, and its hashes are void. Approved work with no reservation, and
signatures stored before documents were built, are simply picked up again by the worker.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import ItemState, RequestItem, RequestState, SigningRequest
from broker.lifecycle import signing_requests
from broker.settings import Settings


def expire_unused_authorisations(factory: sessionmaker[Session], settings: Settings, actor: Actor) -> int:
    """CSC approvals nobody used: their SAD ran out (``sad_seconds`` after the approval)."""
    sad_ended = signing_requests.now() - timedelta(seconds=settings.sad_seconds)
    with read_transaction(factory) as session:
        unused = list(session.scalars(select(SigningRequest.id).where(
            SigningRequest.state == RequestState.APPROVED, SigningRequest.payload.is_(None),
            ~exists().where(RequestItem.request_id == SigningRequest.id, RequestItem.state != ItemState.AUTHORISED),
            SigningRequest.decided_at < sad_ended)))
    ended = 0
    for request_id in unused:
        with transaction(factory) as session:
            try:
                signing_requests.transition(session, actor, signing_requests.get(session, request_id), RequestState.EXPIRED,
                                    expected=(RequestState.APPROVED,), details={"reason": "authorisation_unused"})
            except signing_requests.RequestNotPending:
                continue
            session.execute(update(RequestItem).where(RequestItem.request_id == request_id,
                                                      RequestItem.state == ItemState.AUTHORISED)
                            .values(state=ItemState.VOID))
            ended += 1
    return ended


def stale_reservations(factory: sessionmaker[Session], settings: Settings) -> list[str]:
    """Requests with a hash reserved longer than the reclaim timeout."""
    limit = signing_requests.now() - timedelta(seconds=settings.reservation_timeout_seconds)
    with read_transaction(factory) as session:
        return list(session.scalars(select(RequestItem.request_id).distinct().where(
            RequestItem.state == ItemState.RESERVED, RequestItem.reserved_at < limit)))


def reclaim(factory: sessionmaker[Session], settings: Settings, actor: Actor) -> int:
    """End each request left with a stale reservation as ``failed`` (outcome unknown); how many."""
    ended = 0
    limit = signing_requests.now() - timedelta(seconds=settings.reservation_timeout_seconds)
    for request_id in stale_reservations(factory, settings):
        with transaction(factory) as session:
            voided = session.execute(update(RequestItem).where(
                RequestItem.request_id == request_id, RequestItem.state.in_([ItemState.RESERVED, ItemState.AUTHORISED]),
                RequestItem.reserved_at.is_(None) | (RequestItem.reserved_at < limit)).values(state=ItemState.VOID))
            if not voided.rowcount:  # type: ignore[attr-defined]
                continue  # another worker reclaimed it first
            request = signing_requests.get(session, request_id)
            try:
                signing_requests.transition(session, actor, request, RequestState.FAILED, expected=(RequestState.APPROVED,),
                                    failure_reason="outcome_unknown: the worker signing it stopped; not signed again",
                                    details={"reason": "outcome_unknown"})
            except signing_requests.RequestNotPending:
                continue
            ended += 1
    return ended
