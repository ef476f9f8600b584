"""The decisions that approval devices and authenticators send (the devices themselves, their
enrollment and tokens are in :mod:`broker.approvals.devices`).

Every attempt is audited, good or bad: a failed attempt is recorded in a transaction of its own
after the attempt's transaction rolled back, and counts toward the credential's lockout.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from biometrics import ConfirmationError, Decision, ReplayedCounter, verify_decision
from broker import audit
from broker.approvals.devices import (
    ActivationRefused,
    DeviceNotActive,
    activation_base_url,
    device_user_for_token,
    enroll_device,
    find_device,
    issue_activation_code,
    list_authenticators,
    redeem_activation_code,
    revoke_device,
    token_hash,
)
from broker.audit import Actor
from broker.db.engine import read_connection, transaction
from broker.db.models import (
    ApprovalDevice,
    Credential,
    DeviceStatus,
    ItemState,
    RequestItem,
    RequestState,
    SigningRequest,
)
from broker.errors import Conflict, Gone, KysoError, NotFound
from broker.lifecycle import signing_requests
from broker.observability import metrics
from broker.settings import Settings

# The device side lives in broker.approvals.devices; its names stay importable from here.
__all__ = [
    "ActivationRefused",
    "ConfirmedAtProvider",
    "DeviceNotActive",
    "RequestExpired",
    "activation_base_url",
    "apply_decision",
    "attempt",
    "decide_with_device",
    "device_user_for_token",
    "enroll_device",
    "expire_due",
    "issue_activation_code",
    "list_authenticators",
    "redeem_activation_code",
    "revoke_device",
    "token_hash",
]

T = TypeVar("T")


class ConfirmedAtProvider(Conflict):
    """A delegated credential's requests are confirmed in the provider's app, not through kyso."""

    code = "confirmed_at_provider"


class RequestExpired(Gone):
    code = "request_expired"


# -- decisions ---------------------------------------------------------------------------------------


# The request with its credential (whose lock the decision checks): one statement, not two.
_REQUEST_WITH_CREDENTIAL = (select(SigningRequest).where(SigningRequest.id == bindparam("request_id"))
                            .options(joinedload(SigningRequest.credential)))


def _request_for_user(session: Session, actor: Actor, request_id: str, user_id: int) -> SigningRequest:
    request = session.scalar(_REQUEST_WITH_CREDENTIAL, {"request_id": request_id})
    if request is None or request.user_id != user_id:
        # Another user's request answers as if it did not exist.
        raise NotFound(f"no signing request {request_id!r}")
    return request


def expire_due(factory: sessionmaker[Session], actor: Actor, request_id: str) -> RequestState | None:
    """Expire the request first, in its own transaction, if its time ran out; its state then
    (None for an unknown request). Only an overdue request takes the write lock."""
    with read_connection(factory) as connection:  # waiters call this at every wake-up
        found = signing_requests.current_state(connection, request_id)
    if found is None:
        return None
    if not found[1]:
        return found[0]
    with transaction(factory) as session:
        request = session.get(SigningRequest, request_id)
        assert request is not None
        signing_requests.expire_if_due(session, actor, request)
        return request.state


_DEVICES, _ITEMS = ApprovalDevice.__table__, RequestItem.__table__
# Built once: every approval runs them, on the connection.
_COUNTER_FORWARD = (update(_DEVICES).where(_DEVICES.c.id == bindparam("device_id"), _DEVICES.c.counter < bindparam("new_counter"))
                    .values(counter=bindparam("new_counter")))
_AUTHORISE_ITEMS = (update(_ITEMS).where(_ITEMS.c.request_id == bindparam("b_request_id"), _ITEMS.c.state == ItemState.PENDING)
                    .values(state=ItemState.AUTHORISED))


def apply_decision(
    session: Session,
    actor: Actor,
    request: SigningRequest,
    decision: Decision,
    *,
    via: str,
    evidence: dict[str, object],
) -> None:
    """Approve (hashes become authorised) or refuse (final), and clear the lockout on success."""
    if request.credential.delegated:
        raise ConfirmedAtProvider(f"request {request.id} is confirmed in the {request.credential.provider} app")
    metrics.observe_confirmation((signing_requests.now() - signing_requests.aware(request.created_at)).total_seconds())
    if decision is Decision.APPROVE:
        signing_requests.transition(session, actor, request, RequestState.APPROVED, decided_at=signing_requests.now(),
                            decided_via=via, evidence=evidence, details={"via": via})
        session.connection().execute(_AUTHORISE_ITEMS, {"b_request_id": request.id})
        credential = request.credential
        if credential.failed_confirmations or credential.locked_until is not None:
            session.execute(update(Credential).where(Credential.id == credential.id)
                            .values(failed_confirmations=0, locked_until=None))
    else:
        signing_requests.transition(session, actor, request, RequestState.REJECTED, decided_at=signing_requests.now(),
                            decided_via=via, evidence=evidence, details={"via": via})
        session.execute(update(RequestItem).where(RequestItem.request_id == request.id).values(state=ItemState.VOID))


def attempt(
    factory: sessionmaker[Session],
    settings: Settings,
    actor: Actor,
    action: str,
    request_id: str,
    body: Callable[[Session], T],
) -> T:
    """Run one confirmation attempt; audit it either way; count failed proofs toward a lockout."""
    expire_due(factory, actor, request_id)
    try:
        with transaction(factory) as session:
            return body(session)
    except (KysoError, ConfirmationError) as exc:
        _record_failure(factory, settings, actor, action, request_id, exc)
        raise


def _record_failure(
    factory: sessionmaker[Session], settings: Settings, actor: Actor, action: str, request_id: str,
    exc: KysoError | ConfirmationError,
) -> None:
    with transaction(factory) as session:
        details: dict[str, object] = {"reason": exc.code, "message": exc.message}
        request = session.get(SigningRequest, request_id)
        if isinstance(exc, ConfirmationError) and request is not None:
            credential = session.get(Credential, request.credential_id)
            assert credential is not None
            credential.failed_confirmations += 1
            details["failed_confirmations"] = credential.failed_confirmations
            if credential.failed_confirmations >= settings.confirm_max_failures:
                credential.locked_until = signing_requests.now() + timedelta(seconds=settings.confirm_lock_seconds)
                details["locked_until"] = credential.locked_until.isoformat()
        audit.record(session, actor, action, outcome="refused", target_type="request", target_id=request_id,
                     details=details)


class _UnknownDevice(Exception):
    """No device has this token (audited as such, outside the attempt)."""


def decide_with_device(
    factory: sessionmaker[Session],
    settings: Settings,
    origin: str | None,
    device_token: str,
    request_id: str,
    decision: Decision,
    counter: int,
    signature_b64: str,
) -> SigningRequest:
    """The phone's approval or refusal: signature over the binding, device active, counter forward.

    One transaction when it succeeds (this is on every signature's path); a refused attempt is
    audited in a transaction of its own after it rolled back, as :func:`attempt` does.
    """
    action = f"request.{decision.value}"
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        signature = b""
    actor = Actor("device", "unknown", origin)
    try:
        with transaction(factory) as session:
            device = find_device(session, device_token)
            if device is None:
                raise _UnknownDevice
            actor = Actor("device", device.id, origin)
            if device.status is not DeviceStatus.ACTIVE:
                raise DeviceNotActive("this device was revoked")
            request = _request_for_user(session, actor, request_id, device.user_id)
            if not signing_requests.expire_if_due(session, actor, request):  # else: the expiry commits, the attempt is refused
                if request.state is RequestState.EXPIRED:
                    raise RequestExpired(_expired_message(request))
                if request.state is not RequestState.PENDING:
                    raise signing_requests.RequestNotPending(f"request {request_id} is {request.state.value}")
                signing_requests.check_not_locked(request.credential, signing_requests.now())
                verify_decision(device.public_key, request.binding, decision, counter, device.counter, signature)
                moved = session.connection().execute(_COUNTER_FORWARD, {"device_id": device.id, "new_counter": counter})
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    raise ReplayedCounter("the device counter did not move forward")
                apply_decision(session, actor, request, decision, via=f"device:{device.id}",
                               evidence={"kind": "device", "device": device.id, "counter": counter,
                                         "decision": decision.value, "signature": signature_b64})
                return request
    except _UnknownDevice as exc:
        with transaction(factory) as session:
            audit.record(session, actor, action, outcome="refused", target_type="request", target_id=request_id,
                         details={"reason": DeviceNotActive.code})
        raise DeviceNotActive("unknown device token") from exc
    except (KysoError, ConfirmationError) as exc:
        _record_failure(factory, settings, actor, action, request_id, exc)
        raise
    expired = RequestExpired(_expired_message(request))
    _record_failure(factory, settings, actor, action, request_id, expired)
    raise expired


def _expired_message(request: SigningRequest) -> str:
    return f"request {request.id} expired at {signing_requests.aware(request.expires_at):%H:%M:%S} UTC"
