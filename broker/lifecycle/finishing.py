"""Finishing approved REST requests: a worker claims one (a lease, so that two workers never build
the same file), signs its data-to-be-signed under sole control, builds its documents and marks it signed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from broker import credentials as credential_service
from broker.db.engine import read_connection, transaction
from broker.db.models import Credential, ItemState, RequestItem, RequestState, SigningRequest, User
from broker.errors import KysoError, NotFound
from broker.lifecycle import signing_requests, sole_control
from broker.lifecycle.payload import RequestPayload
from hsm import Hsm
from signer import ltv, pipeline
from signer.errors import SignerError


def pending_work(factory: sessionmaker[Session]) -> list[str]:
    """Approved REST requests the worker still has to sign (CSC ones are signed by signHash).

    A request whose hashes another worker has reserved is that worker's, or, if it died, the
    reclaimer's (:mod:`broker.lifecycle.recovery`).
    """
    with read_connection(factory) as connection:  # at every wake-up of every worker: no ORM session
        return list(connection.execute(_PENDING_WORK, {"b_now": signing_requests.now()}).scalars())


_RESERVED = exists().where(RequestItem.request_id == SigningRequest.id, RequestItem.state == ItemState.RESERVED)
_PENDING_WORK = select(SigningRequest.id).where(
    SigningRequest.state == RequestState.APPROVED, SigningRequest.client_id.is_not(None),
    SigningRequest.sad_hash.is_(None), SigningRequest.payload.is_not(None), ~_RESERVED,
    SigningRequest.finishing_until.is_(None) | (SigningRequest.finishing_until < bindparam("b_now")))


def claim(factory: sessionmaker[Session], request_id: str, finisher: str, seconds: float) -> bool:
    """Take the lease to finish an approved request; False if another worker holds it.

    Only the holder signs and writes the request's documents, so two workers never build the
    same file. A worker that dies keeps the lease until it runs out; then another one resumes
    from the stored signatures.
    """
    with transaction(factory) as session:
        return _take(session, request_id, finisher, seconds)


def _take(session: Session, request_id: str, finisher: str, seconds: float) -> bool:
    moment = signing_requests.now()
    taken = session.connection().execute(_CLAIM, {"b_id": request_id, "b_now": moment, "b_finisher": finisher,
                                                  "b_until": moment + timedelta(seconds=seconds)})
    return taken.rowcount == 1  # type: ignore[attr-defined]


@dataclass
class Lease:
    """A lease just taken with :func:`claim`: who holds it, for how long each renewal holds."""

    finisher: str
    seconds: float
    renewed_at: float = field(default_factory=time.monotonic)


class LeaseLost(KysoError):
    """Another worker took the request over (this one was too slow): stop, write nothing more."""

    code = "lease_lost"


def release(factory: sessionmaker[Session], request_id: str, finisher: str, retry_after: float = 0) -> None:
    """Give the lease back after an error; the request is tried again after ``retry_after`` seconds."""
    until = signing_requests.now() + timedelta(seconds=retry_after) if retry_after else None
    held = SigningRequest.finisher == finisher
    if retry_after:  # a claim made in the transaction that failed was rolled back with it: pause all the same
        held = held | SigningRequest.finisher.is_(None)
    with transaction(factory) as session:
        session.execute(update(SigningRequest).where(SigningRequest.id == request_id, held)
                        .values(finisher=None, finishing_until=until))


def _renew(factory: sessionmaker[Session], request_id: str, lease: Lease | None) -> None:
    """Extend the lease once a third of it has gone (a lost lease is noticed well before it matters)."""
    if lease is None or time.monotonic() - lease.renewed_at < lease.seconds / 3:
        return
    lease.renewed_at = time.monotonic()
    with transaction(factory) as session:
        kept = session.execute(update(SigningRequest).where(
            SigningRequest.id == request_id, SigningRequest.finisher == lease.finisher,
            SigningRequest.state == RequestState.APPROVED)
            .values(finishing_until=signing_requests.now() + timedelta(seconds=lease.seconds)))
        if kept.rowcount != 1:  # type: ignore[attr-defined]
            raise LeaseLost(f"request {request_id} is being finished by another worker")


def _end_lease(session: Session, request_id: str, lease: Lease | None) -> None:
    """In the transaction that ends the request: only the lease holder ends it."""
    ended = session.connection().execute(_END_LEASE if lease else _END_ANY_LEASE,
                                         {"b_id": request_id, "b_finisher": lease.finisher if lease else None})
    if lease is not None and ended.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"request {request_id} is being finished by another worker")


_TABLE = SigningRequest.__table__
# Built once, run on the connection: every request a worker finishes runs them.
_CLAIM = (update(_TABLE).where(_TABLE.c.id == bindparam("b_id"), _TABLE.c.state == RequestState.APPROVED,
                               _TABLE.c.finishing_until.is_(None) | (_TABLE.c.finishing_until < bindparam("b_now")))
          .values(finisher=bindparam("b_finisher"), finishing_until=bindparam("b_until")))
_END_ANY_LEASE = update(_TABLE).where(_TABLE.c.id == bindparam("b_id")).values(finisher=None, finishing_until=None)
_END_LEASE = _END_ANY_LEASE.where(_TABLE.c.finisher == bindparam("b_finisher"))


# The request with what finishing it reads (its signer's credential, user and unit; its items) in two statements.
_TO_FINISH = select(SigningRequest).where(SigningRequest.id == bindparam("b_id")).options(
    joinedload(SigningRequest.credential).joinedload(Credential.user).joinedload(User.unit),
    selectinload(SigningRequest.items))


def finish(factory: sessionmaker[Session], hsm: Hsm, ctx_actor: Any, request_id: str,
           services_for: Callable[[str], ltv.LongTermServices], lease: Lease | None = None, *,
           claim: bool = False) -> bool:
    """Sign the approved data-to-be-signed, write the signed documents, then mark the request signed.

    The signatures are stored before the documents are built: a worker that dies in between
    leaves an approved request whose signatures exist, and the next run builds its documents
    from them without signing again. A document that cannot be built at the asked level (the TSA
    is down, revocation data is missing, the certificate is revoked) fails the request, unless
    the relying system accepted a lower level. The caller holds the request's ``lease``
    (:func:`claim`); it is renewed before each document, and a worker that lost it stops. With
    ``claim``, the lease is taken here instead, in the transaction that reserves. True once the
    request was finished (signed, or failed); False if another worker holds it (nothing was done).
    """
    if not claim:
        _renew(factory, request_id, lease)  # still ours before anything is signed or written
    with transaction(factory) as session:  # read it and reserve what is left to sign, in one transaction
        if claim and (lease is None or not _take(session, request_id, lease.finisher, lease.seconds)):
            return False
        request = session.scalar(_TO_FINISH, {"b_id": request_id})
        if request is None:
            raise NotFound(f"no signing request {request_id!r}")
        already = [i.signature for i in request.items if i.state is ItemState.CONSUMED and i.signature]
        payload = RequestPayload.of(request)
        material = credential_service.signing_material(request.credential)
        provider = request.credential.provider
        reservation = None if len(already) == len(request.items) else sole_control.reserve(session, hsm, request)
    signatures = already if reservation is None else sole_control.sign_reserved(factory, ctx_actor, reservation,
                                                                                 mark_signed=False)
    services = services_for(provider) if payload.level.timestamped else None
    achieved: list[ltv.Level] = []
    try:
        for document, signature in zip(payload.documents, signatures):
            _renew(factory, request_id, lease)
            achieved.append(pipeline.finish(document, signature, material, payload.level, services,
                                            accept_lower=payload.accept_lower_level))
    except SignerError as exc:
        with transaction(factory) as session:
            _end_lease(session, request_id, lease)
            signing_requests.transition(session, ctx_actor, session.merge(request, load=False), RequestState.FAILED,
                                        expected=(RequestState.APPROVED,),
                                        failure_reason=f"{exc.code}: {exc.message}"[:255], details={"reason": exc.code})
        return True
    reached = min(achieved, key=list(ltv.Level).index) if achieved else ltv.Level.B_B
    with transaction(factory) as session:  # as read above (still approved: the transition re-checks the row)
        _end_lease(session, request_id, lease)
        signing_requests.transition(session, ctx_actor, session.merge(request, load=False), RequestState.SIGNED,
                                    expected=(RequestState.APPROVED,), payload=payload.reached(reached).to_column(),
                                    details={"signatures": len(signatures), "level": reached.value})
    return True
