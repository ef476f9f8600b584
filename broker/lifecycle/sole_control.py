"""Sole control: the one module that uses a signer's key, and only for hashes the signer approved.

An approval authorises exactly the request's hashes. Each hash is a row moved
authorised → reserved → consumed by conditional updates, so a hash is signed at most once even
with several workers racing; a reservation is released only after a definite failure. In
production this check belongs in the HSM's signature activation module (EN 419 241-2); it stays
behind :func:`sign_approved` so that it can move there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Integer, LargeBinary, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from broker import credentials
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Credential, ItemState, RequestItem, RequestState, SigningRequest
from broker.errors import Conflict
from broker.lifecycle import signing_requests
from broker.observability import metrics
from hsm import Hsm, HsmError
from signer import PssParams, SignatureScheme, SignerError
from signer.hsm_signer import HsmKeySigner


class NotAuthorised(Conflict):
    """No approved, unused authorisation covers this request."""

    code = "not_authorised"


_TABLE = RequestItem.__table__
# Built once: every signing run executes them, on the connection.
_RESERVE = (update(_TABLE).where(_TABLE.c.request_id == bindparam("b_request_id"), _TABLE.c.state == ItemState.AUTHORISED)
            .values(state=ItemState.RESERVED, reserved_at=bindparam("b_at")))
_ITEMS = select(_TABLE.c.id, _TABLE.c.digest).where(_TABLE.c.request_id == bindparam("b_request_id")).order_by(_TABLE.c.position)
_CONSUME = (update(_TABLE).where(_TABLE.c.id == bindparam("b_item_id"), _TABLE.c.state == ItemState.RESERVED)
            .values(state=ItemState.CONSUMED, signature=bindparam("b_signature")))
# PostgreSQL: every signature in one statement, the ids and signatures as two arrays (psycopg's
# executemany sends a statement per row).
_SIGNED = select(func.unnest(bindparam("b_ids", type_=ARRAY(Integer))).label("id"),
                 func.unnest(bindparam("b_signatures", type_=ARRAY(LargeBinary))).label("signature")).subquery("signed")
_CONSUME_ALL = (update(_TABLE).where(_TABLE.c.id == _SIGNED.c.id, _TABLE.c.state == ItemState.RESERVED)
                .values(state=ItemState.CONSUMED, signature=_SIGNED.c.signature))


@dataclass(frozen=True)
class Reservation:
    """A request's hashes, reserved for one signing run by :func:`reserve`."""

    request: SigningRequest
    item_ids: list[int]
    digests: list[bytes]
    key: HsmKeySigner


def reserve(session: Session, hsm: Hsm, request: SigningRequest) -> Reservation:
    """Move an approved request's authorised hashes to reserved, in the caller's transaction
    (which commits before anything is signed); a request already signing or signed is refused."""
    if request.state is not RequestState.APPROVED:
        raise NotAuthorised(f"request {request.id} is {request.state.value}; only an approved request signs")
    connection = session.connection()
    reserved = connection.execute(_RESERVE, {"b_request_id": request.id, "b_at": signing_requests.now()}).rowcount
    items = connection.execute(_ITEMS, {"b_request_id": request.id}).all()
    if reserved != len(items):
        raise NotAuthorised(f"the authorisation of request {request.id} was already used")
    credential = session.get(Credential, request.credential_id)
    assert credential is not None
    return Reservation(request, [item.id for item in items], [item.digest for item in items],
                       credentials.key_signer(hsm, credential))


def sign_approved(
    factory: sessionmaker[Session],
    hsm: Hsm,
    actor: Actor,
    request_id: str,
    *,
    scheme: SignatureScheme | None = None,
    pss: PssParams | None = None,
    mark_signed: bool = True,
) -> list[bytes]:
    """Sign the request's approved hashes, in order, exactly once; the request ends ``signed``.

    With ``mark_signed=False`` the request stays ``approved`` with its signatures stored, for a
    caller that still has to build documents around them (and marks the request itself).
    """
    with transaction(factory) as session:
        reservation = reserve(session, hsm, signing_requests.get(session, request_id))
    return sign_reserved(factory, actor, reservation, scheme=scheme, pss=pss, mark_signed=mark_signed)


def sign_reserved(
    factory: sessionmaker[Session],
    actor: Actor,
    reservation: Reservation,
    *,
    scheme: SignatureScheme | None = None,
    pss: PssParams | None = None,
    mark_signed: bool = True,
) -> list[bytes]:
    """Sign what :func:`reserve` reserved (its transaction committed), then store the signatures."""
    request = reservation.request
    started = time.perf_counter()
    try:
        # The batch in one call: the HSM signs it over as few sessions as it can, one key look-up each.
        signatures = reservation.key.sign_many(reservation.digests, request.hash_algorithm, scheme=scheme, pss=pss)
    except (HsmError, SignerError) as exc:
        if isinstance(exc, HsmError):
            metrics.record_hsm_error(exc.code)
        # A definite failure: nothing was signed for the rest; the request ends failed.
        with transaction(factory) as session:
            session.execute(update(RequestItem).where(RequestItem.request_id == request.id,
                                                      RequestItem.state == ItemState.RESERVED)
                            .values(state=ItemState.VOID))
            signing_requests.transition(session, actor, session.merge(request, load=False), RequestState.FAILED,
                                expected=(RequestState.APPROVED,), failure_reason=f"{exc.code}: {exc.message}"[:255],
                                details={"reason": exc.code})
        raise
    per_signature = (time.perf_counter() - started) / max(len(signatures), 1)
    for _ in signatures:
        metrics.observe_hsm_sign(per_signature)

    with transaction(factory) as session:
        store_signatures(session.connection(), reservation.item_ids, signatures)
        if mark_signed:
            # The request as reserved (committed, still approved): its transition re-checks the row.
            signing_requests.transition(session, actor, session.merge(request, load=False), RequestState.SIGNED,
                                expected=(RequestState.APPROVED,), details={"signatures": len(signatures)})
    return signatures


def store_signatures(connection: Connection, item_ids: list[int], signatures: list[bytes]) -> None:
    """Each reserved hash's signature, the hash then consumed; a hash no longer reserved is left as it is."""
    if connection.dialect.name == "postgresql":
        connection.execute(_CONSUME_ALL, {"b_ids": item_ids, "b_signatures": signatures})
    else:  # SQLite's executemany runs in C, in the process
        connection.execute(_CONSUME, [{"b_item_id": i, "b_signature": s} for i, s in zip(item_ids, signatures)])
