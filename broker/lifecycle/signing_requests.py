"""The signing-request lifecycle: pending → approved → signed, or rejected / expired / failed /
cancelled. Every state change is a conditional update plus its audit event, in one transaction.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Update, bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from biometrics import BindingInput, BoundDocument, compute_binding, verification_code
from biometrics.text import describe, unsafe_character
from broker import audit
from broker.audit import Actor
from broker.credentials import batch_limit, check_not_revoked, check_signing_allowed
from broker.db import bulk
from broker.db.models import (
    FINAL_STATES,
    Credential,
    CredentialMode,
    ItemState,
    RequestItem,
    RequestState,
    SigningRequest,
)
from broker.errors import Conflict, InvalidInput, InvalidText, NotFound, PolicyViolation
from broker.lifecycle import webhooks
from broker.lifecycle.clock import aware, now
from broker.lifecycle.payload import RequestPayload
from broker.observability import metrics
from broker.settings import Settings
from ca_adapters import CaAdapter
from signer import pipeline
from signer.algorithms import check_digest


class TooManyPending(PolicyViolation):
    code = "too_many_pending_requests"


class CredentialLocked(PolicyViolation):
    code = "credential_locked"


class RequestNotPending(Conflict):
    code = "request_not_pending"


@dataclass(frozen=True)
class DocumentToSign:
    digest: bytes
    title: str
    summary: str = ""
    options: Mapping[str, str | bool] = field(default_factory=dict)
    """What changes the signature's meaning (PAdES: :func:`pades_options`): shown to the signer and bound."""


# Option name: (longest, multi-line); booleans have no length. See biometrics.binding.
SHOWN_OPTIONS: dict[str, tuple[int, bool] | None] = {
    "field_name": (64, False), "certify": None, "reason": (255, False), "location": (255, False),
    "stamp_text": (500, True), "reference_id": (128, False), "placement": (255, False), "page": (8, False),
    "box": (64, False)}


def pades_options(*, field_name: str, certify: bool, reason: str | None = None, location: str | None = None,
                  stamp_text: str | None = None, page: int | None = None,
                  box: tuple[float, float, float, float] | None = None) -> dict[str, str | bool]:
    """The PAdES options a signer is shown and approves; a text not given is left out (a new field's
    page and box as text: "2", "50,250,290,330")."""
    given = {"reason": reason, "location": location, "stamp_text": stamp_text,
             "page": str(page) if page is not None else None,
             "box": ",".join(f"{v:g}" for v in box) if box is not None else None}
    return {"field_name": field_name, "certify": certify, **{k: v for k, v in given.items() if v}}


def xades_options(*, reference_id: str, placement: str) -> dict[str, str | bool]:
    """Where an XML signature goes and what it covers: a signer approves both."""
    return {"reference_id": reference_id, "placement": placement}


def spec_options(spec: pipeline.Spec) -> dict[str, str | bool]:
    """The options of a document's format that change what its signature means (none for CAdES)."""
    if isinstance(spec, pipeline.PadesSpec):
        return pades_options(field_name=spec.field_name, certify=spec.certify, reason=spec.reason,
                             location=spec.location, stamp_text=spec.stamp_text, page=spec.page, box=spec.box)
    if isinstance(spec, pipeline.XadesSpec):
        return xades_options(reference_id=spec.reference_id, placement=spec.placement)
    return {}


def check_shown_text(value: str, what: str, *, multiline: bool = False) -> None:
    """Refuse text that could display as something else (an RLO turning "000,000,1" into "1,000,000")."""
    found = unsafe_character(value, multiline=multiline)
    if found is not None:
        raise InvalidText(f"{what} holds {describe(found[1])} at character {found[0]}: text shown to the signer "
                          f"may not hold control, format or bidirectional characters"
                          f"{' (a newline is allowed)' if multiline else ''}")


def check_shown(title: str, summary: str, options: Mapping[str, object], what: str = "document") -> None:
    """Everything of a document that the signer is shown: title, summary and options."""
    check_shown_text(title, f"{what} title")
    check_shown_text(summary, f"{what} summary", multiline=True)
    for name, value in options.items():
        if name not in SHOWN_OPTIONS:
            raise InvalidInput(f"{what} has an unknown option {name[:64]!r}")
        limits = SHOWN_OPTIONS[name]
        if limits is None:
            if not isinstance(value, bool):
                raise InvalidInput(f"{what} option {name} is true or false")
            continue
        if not isinstance(value, str) or len(value) > limits[0]:
            raise InvalidInput(f"{what} option {name} is a text of at most {limits[0]} characters")
        check_shown_text(value, f"{what} {name}", multiline=limits[1])


def check_not_locked(credential: Credential, at: datetime) -> None:
    if credential.locked_until is not None and aware(credential.locked_until) > at:
        raise CredentialLocked(
            f"credential {credential.id!r} is locked after repeated failed confirmations until "
            f"{aware(credential.locked_until):%H:%M:%S} UTC"
        )


def create(
    session: Session,
    settings: Settings,
    actor: Actor,
    credential: Credential,
    documents: Sequence[DocumentToSign],
    *,
    relying_system: str,
    provider: CaAdapter,
    hash_algorithm: str = "sha256",
    ttl_seconds: int | None = None,
    payload: RequestPayload | None = None,
    **columns: object,
) -> SigningRequest:
    """A pending request whose binding covers every hash, title, summary and option, in order;
    ``payload`` is its record of its own work, ``columns`` more of its columns (its client, format...),
    written in the same INSERT.

    Every path that opens a request comes here, so every path checks the same things: the
    credential is usable, its unit signs remotely, and ``provider`` (the credential's CA) neither
    revoked nor forgot its certificate."""
    if not documents:
        raise InvalidInput("a signing request needs at least one hash")
    limit = batch_limit(credential, settings.max_batch)
    if len(documents) > limit:
        raise InvalidInput(f"at most {limit} hashes per request with credential {credential.id}")
    for position, doc in enumerate(documents):
        check_digest(doc.digest, hash_algorithm)
        check_shown(doc.title, doc.summary, doc.options, f"document {position}")
        if not doc.title.strip():
            raise InvalidInput("every document needs a title the signer can read")
        if len(doc.title) > 255 or len(doc.summary) > 2000:
            raise InvalidInput("a title has at most 255 characters, a summary 2000")
    moment = now()
    check_signing_allowed(credential, moment)
    check_not_locked(credential, moment)
    check_not_revoked(credential, provider)
    connection = session.connection()
    pending = connection.execute(_PENDING_FOR_USER, {"user_id": credential.user_id, "moment": moment}).scalar()
    if (pending or 0) >= settings.max_pending_per_user:
        raise TooManyPending(f"the signer already has {pending} pending requests")
    request_id = uuid.uuid4().hex
    expires_at = (moment + timedelta(seconds=ttl_seconds or settings.request_ttl_seconds)).replace(microsecond=0)
    nonce = secrets.token_urlsafe(16)
    binding = compute_binding(
        BindingInput(
            request_id=request_id,
            credential_id=credential.id,
            relying_system=relying_system,
            hash_algorithm=hash_algorithm,
            documents=[BoundDocument(d.digest, d.title, d.summary, d.options) for d in documents],
            expires_at=expires_at,
            nonce=nonce,
        )
    )
    if any(d.options for d in documents):  # kept to show them again: they are bound
        payload = replace(payload or RequestPayload(), shown_options=tuple(dict(d.options) for d in documents))
    if payload is not None:
        columns["payload"] = payload.to_column()
    request = SigningRequest(
        id=request_id,
        credential_id=credential.id,
        user_id=credential.user_id,
        relying_system=relying_system,
        state=RequestState.PENDING,
        hash_algorithm=hash_algorithm,
        nonce=nonce,
        binding=binding,
        verification_code=verification_code(binding),
        created_at=moment,
        expires_at=expires_at,
        **columns,
    )
    session.add(request)
    session.flush()
    # Up to 50 hashes in one round trip, without an ORM object each.
    bulk.insert_rows(connection, _ADD_ITEMS, [
        {"request_id": request_id, "position": position, "digest": doc.digest, "title": doc.title,
         "summary": doc.summary, "state": ItemState.PENDING} for position, doc in enumerate(documents)])
    audit.record(session, actor, "request.create", target_type="request", target_id=request_id,
                 details={"credential": credential.id, "relying_system": relying_system, "hashes": len(documents),
                          "expires_at": expires_at.isoformat()})
    return request


_REQUESTS = SigningRequest.__table__
# Built once, run on the connection: by every new request, and (_STATE) at every waiter's wake-up.
_PENDING_FOR_USER = select(func.count()).where(
    _REQUESTS.c.user_id == bindparam("user_id"), _REQUESTS.c.state == RequestState.PENDING,
    _REQUESTS.c.expires_at > bindparam("moment"))
_ADD_ITEMS = insert(RequestItem.__table__)
_STATE = select(SigningRequest.state, SigningRequest.expires_at).where(SigningRequest.id == bindparam("b_id"))


def current_state(connection: Connection, request_id: str) -> tuple[RequestState, bool] | None:
    """A request's state and whether it is overdue (pending past its expiry), from one small row:
    what every waiter re-reads at each wake-up. None for an unknown request."""
    found = connection.execute(_STATE, {"b_id": request_id}).first()
    if found is None:
        return None
    return found.state, found.state is RequestState.PENDING and aware(found.expires_at) <= now()


def get(session: Session, request_id: str) -> SigningRequest:
    request = session.get(SigningRequest, request_id)
    if request is None:
        raise NotFound(f"no signing request {request_id!r}")
    return request


def pending_for_user(session: Session, user_id: int) -> list[SigningRequest]:
    """The requests still waiting for this signer's confirmation through kyso, oldest first."""
    query = (select(SigningRequest).join(Credential, Credential.id == SigningRequest.credential_id)
             .options(selectinload(SigningRequest.items)))  # one query for every request's items
    return list(session.scalars(query.where(*_AWAITING_WHERE).order_by(SigningRequest.created_at),
                                {"b_user_ids": [user_id], "b_now": now()}))


@dataclass(frozen=True)
class AwaitingItem:
    position: int
    title: str
    summary: str
    digest: bytes


@dataclass(frozen=True)
class AwaitingRequest:
    """A request waiting for its signer, with what a device shows of it (the binding's inputs)."""

    id: str
    credential_id: str
    relying_system: str
    hash_algorithm: str
    verification_code: str
    binding: bytes
    nonce: str
    expires_at: datetime
    payload: dict[str, object] | None
    items: list[AwaitingItem]


def awaiting_requests(connection: Connection, user_id: int) -> list[AwaitingRequest]:
    """What :func:`pending_for_user` finds, read in one statement without ORM objects: the list a
    phone fetches each time it changes (up to 50 hashes a request)."""
    found: list[AwaitingRequest] = []
    for row in connection.execute(_AWAITING_WITH_ITEMS, {"b_user_ids": [user_id], "b_now": now()}):
        if not found or found[-1].id != row.id:
            found.append(AwaitingRequest(row.id, row.credential_id, row.relying_system, row.hash_algorithm,
                                         row.verification_code, row.binding, row.nonce, row.expires_at, row.payload,
                                         []))
        found[-1].items.append(AwaitingItem(row.position, row.title, row.summary, row.digest))
    return found


def awaiting_confirmation(connection: Connection, user_ids: Sequence[int]) -> list[Row[Any]]:
    """``(id, user_id, binding, expires_at)`` of the requests these signers still have to confirm through kyso,
    oldest first: what an approval device needs, without loading the requests."""
    return list(connection.execute(_AWAITING, {"b_user_ids": list(user_ids), "b_now": now()}).all())


_AWAITING_WHERE = (SigningRequest.user_id.in_(bindparam("b_user_ids", expanding=True)),
                   SigningRequest.state == RequestState.PENDING, SigningRequest.expires_at > bindparam("b_now"),
                   Credential.mode == CredentialMode.HOSTED)
_AWAITING = (
    select(SigningRequest.id, SigningRequest.user_id, SigningRequest.binding, SigningRequest.expires_at)
    .join(Credential, Credential.id == SigningRequest.credential_id)
    .where(*_AWAITING_WHERE)
    .order_by(SigningRequest.created_at)
)
_AWAITING_WITH_ITEMS = (
    select(SigningRequest.id, SigningRequest.credential_id, SigningRequest.relying_system, SigningRequest.hash_algorithm,
           SigningRequest.verification_code, SigningRequest.binding, SigningRequest.nonce, SigningRequest.expires_at,
           SigningRequest.payload, RequestItem.position, RequestItem.title, RequestItem.summary, RequestItem.digest)
    .join(Credential, Credential.id == SigningRequest.credential_id)
    .join(RequestItem, RequestItem.request_id == SigningRequest.id)
    .where(*_AWAITING_WHERE)
    .order_by(SigningRequest.created_at, SigningRequest.id, RequestItem.position)
)


def transition(
    session: Session,
    actor: Actor,
    request: SigningRequest,
    to: RequestState,
    *,
    expected: Sequence[RequestState] = (RequestState.PENDING,),
    details: dict[str, object] | None = None,
    **values: object,
) -> None:
    """Move ``request`` to ``to`` only if it is still in one of ``expected`` (exactly one racer wins)."""
    result = session.connection().execute(_transition_statement(tuple(sorted(values))),
                                          {"b_id": request.id, "b_expected": list(expected), "b_state": to,
                                           **{f"b_{key}": value for key, value in values.items()}})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(request)
        raise RequestNotPending(f"request {request.id} is {request.state.value}, not {'/'.join(s.value for s in expected)}")
    # The row now holds exactly these values: set them on the object instead of reading it back.
    for key, value in {"state": to, **values}.items():
        set_committed_value(request, key, value)
    audit.record(session, actor, f"request.{to.value}", target_type="request", target_id=request.id,
                 details=details or {})
    if to in FINAL_STATES:
        webhooks.enqueue(session, request)
        level = None
        if to is RequestState.SIGNED and request.format != "raw":
            payload = RequestPayload.of(request)
            level = (payload.achieved_level or payload.level).value
        session.info.setdefault(_ENDED, []).append((request.format, level, to.value))


@functools.cache
def _transition_statement(columns: tuple[str, ...]) -> Update:
    """The conditional UPDATE of a transition setting ``columns`` besides the state, built once."""
    table = SigningRequest.__table__
    return (update(table).where(table.c.id == bindparam("b_id"), table.c.state.in_(bindparam("b_expected", expanding=True)))
            .values(state=bindparam("b_state"), **{column: bindparam(f"b_{column}") for column in columns}))


_ENDED = "kyso.requests_ended"


@event.listens_for(Session, "after_commit")
def _count_ended(session: Session) -> None:
    """Count requests that ended only once their transaction committed, so metrics agree with the database."""
    for format_, level, outcome in session.info.pop(_ENDED, []):
        metrics.record_signature(format_, level, outcome)


@event.listens_for(Session, "after_rollback")
def _forget_ended(session: Session) -> None:
    session.info.pop(_ENDED, None)


def overdue(request: SigningRequest) -> bool:
    """Still pending although its time ran out: :func:`expire_if_due` would expire it."""
    return request.state is RequestState.PENDING and aware(request.expires_at) <= now()


def expire_if_due(session: Session, actor: Actor, request: SigningRequest) -> bool:
    """Mark a pending request whose time ran out as expired (audited). True if it expired."""
    if overdue(request):
        try:
            transition(session, actor, request, RequestState.EXPIRED)
        except RequestNotPending:
            return False
        session.execute(update(RequestItem).where(RequestItem.request_id == request.id).values(state=ItemState.VOID))
        return True
    return False


def cancel(session: Session, actor: Actor, request: SigningRequest) -> None:
    transition(session, actor, request, RequestState.CANCELLED, expected=(RequestState.PENDING,))
    session.execute(update(RequestItem).where(RequestItem.request_id == request.id).values(state=ItemState.VOID))

