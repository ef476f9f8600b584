"""Approval devices (the phone protocol) and the decisions they send.

Every attempt is audited, good or bad: a failed attempt is recorded in a transaction of its own
after the attempt's transaction rolled back, and counts toward the credential's lockout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import urlencode

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from biometrics import ConfirmationError, Decision, ReplayedCounter, verify_decision
from biometrics.device import load_device_key
from broker import audit
from broker.audit import Actor
from broker.db.engine import read_connection, transaction
from broker.db.models import (
    ActivationCode,
    ApprovalDevice,
    Credential,
    DeviceStatus,
    ItemState,
    RequestItem,
    RequestState,
    SigningRequest,
    User,
    WebAuthnCredential,
    WebSession,
)
from broker.directory import get_user
from broker.errors import Conflict, Gone, InvalidInput, KysoError, NotFound
from broker.lifecycle import signing_requests
from broker.observability import metrics
from broker.settings import Settings, loopback_as_localhost

T = TypeVar("T")


class ConfirmedAtProvider(Conflict):
    """A delegated credential's requests are confirmed in the provider's app, not through kyso."""

    code = "confirmed_at_provider"


class DeviceNotActive(KysoError):
    code = "device_not_active"
    status = 403


class ActivationRefused(KysoError):
    code = "activation_refused"
    status = 403


class RequestExpired(Gone):
    code = "request_expired"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- activation and enrollment ---------------------------------------------------------------------


def issue_activation_code(session: Session, settings: Settings, actor: Actor, username: str) -> tuple[str, str]:
    """A one-time code (and the ``kyso://activate`` URI for its QR code) for ``username``."""
    user = get_user(session, username)
    code = "-".join(secrets.token_hex(2).upper() for _ in range(3))
    session.add(
        ActivationCode(
            user_id=user.id,
            code_hash=token_hash(code),
            expires_at=signing_requests.now() + timedelta(seconds=settings.activation_ttl_seconds),
        )
    )
    session.flush()
    audit.record(session, actor, "device.activation_code", target_type="user", target_id=username)
    uri = "kyso://activate?" + urlencode({"base_url": activation_base_url(settings), "code": code})
    return code, uri


def activation_base_url(settings: Settings) -> str:
    """Where the phone should go: the configured public base URL, else the running server's
    (``DATA_DIR/server.json``, for a CLI beside ``kyso serve``), else the default."""
    if settings.base_url_is_explicit():
        return settings.public_base_url.rstrip("/")
    try:
        described = json.loads((settings.data_dir / "server.json").read_text())
    except (OSError, ValueError):
        described = None
    url = described.get("url") if isinstance(described, dict) else None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return loopback_as_localhost(url)
    return settings.public_base_url.rstrip("/")


def redeem_activation_code(session: Session, code: str) -> User:
    """Use up a code (conditional update: one use only) and return its user."""
    row = session.scalar(select(ActivationCode).where(ActivationCode.code_hash == token_hash(code.strip().upper())))
    moment = signing_requests.now()
    if row is None or row.used_at is not None or signing_requests.aware(row.expires_at) <= moment:
        raise ActivationRefused("unknown, used or expired activation code")
    result = session.execute(
        update(ActivationCode).where(ActivationCode.id == row.id, ActivationCode.used_at.is_(None)).values(used_at=moment)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ActivationRefused("unknown, used or expired activation code")
    return row.user


def enroll_device(session: Session, actor: Actor, code: str, public_key_der: bytes, name: str) -> tuple[ApprovalDevice, str]:
    """Register a phone's P-256 key; return the device and its bearer token (shown once)."""
    try:
        load_device_key(public_key_der)
    except ConfirmationError as exc:
        raise InvalidInput(exc.message) from exc
    user = redeem_activation_code(session, code)
    token = secrets.token_urlsafe(32)
    device = ApprovalDevice(
        id=uuid.uuid4().hex, user_id=user.id, name=name[:128] or "phone", public_key=public_key_der,
        token_hash=token_hash(token), counter=0, status=DeviceStatus.ACTIVE,
    )
    session.add(device)
    session.flush()
    audit.record(session, actor, "device.enroll", target_type="device", target_id=device.id,
                 details={"user": user.username, "name": device.name})
    return device, token


# Built once: every phone call looks its device up.
_DEVICE_BY_TOKEN = select(ApprovalDevice).where(ApprovalDevice.token_hash == bindparam("token_hash"))
_DEVICE_USER_BY_TOKEN = (select(ApprovalDevice.user_id, ApprovalDevice.token_hash, ApprovalDevice.status)
                         .where(ApprovalDevice.token_hash == bindparam("token_hash")))


def device_for_token(session: Session, token: str) -> ApprovalDevice:
    device = session.scalar(_DEVICE_BY_TOKEN, {"token_hash": token_hash(token)})
    _check_device(token, device.token_hash if device else None, device.status if device else None)
    assert device is not None
    return device


def device_user_for_token(connection: Connection, token: str) -> int:
    """The signer whose active device holds ``token``: one Core read, what each phone poll asks."""
    found = connection.execute(_DEVICE_USER_BY_TOKEN, {"token_hash": token_hash(token)}).first()
    _check_device(token, found.token_hash if found else None, found.status if found else None)
    assert found is not None
    return int(found.user_id)


def _check_device(token: str, stored_hash: str | None, status: DeviceStatus | None) -> None:
    # The lookup is by hash; compare again in constant time for good measure.
    if stored_hash is None or not hmac.compare_digest(stored_hash, token_hash(token)):
        raise DeviceNotActive("unknown device token")
    if status is not DeviceStatus.ACTIVE:
        raise DeviceNotActive("this device was revoked")


@dataclass(frozen=True)
class Authenticator:
    """Anything that can approve for a signer: a phone (``phone``) or a WebAuthn authenticator (``webauthn``)."""

    id: str
    kind: str
    name: str
    status: DeviceStatus
    counter: int
    created_at: datetime
    revoked_at: datetime | None


def list_devices(session: Session, username: str) -> list[ApprovalDevice]:
    user = get_user(session, username)
    return list(session.scalars(select(ApprovalDevice).where(ApprovalDevice.user_id == user.id)
                                .order_by(ApprovalDevice.created_at)))


def _phone(d: ApprovalDevice) -> Authenticator:
    return Authenticator(d.id, "phone", d.name, d.status, d.counter, d.created_at, d.revoked_at)


def _webauthn(a: WebAuthnCredential) -> Authenticator:
    return Authenticator(a.id, "webauthn", a.name, a.status, a.sign_count, a.created_at, a.revoked_at)


def list_authenticators(session: Session, username: str) -> list[Authenticator]:
    """The user's phones and WebAuthn authenticators, oldest first, revoked ones included."""
    user = get_user(session, username)
    found = [_phone(d) for d in session.scalars(select(ApprovalDevice).where(ApprovalDevice.user_id == user.id))]
    found += [_webauthn(a) for a in
              session.scalars(select(WebAuthnCredential).where(WebAuthnCredential.user_id == user.id))]
    return sorted(found, key=lambda a: (signing_requests.aware(a.created_at), a.id))


def revoke_device(session: Session, actor: Actor, username: str, device_id: str) -> list[Authenticator]:
    """Revoke the user's phone or WebAuthn authenticator ``device_id`` (both, should their ids
    coincide): it approves nothing more, and the approval-page sessions it opened end now."""
    user = get_user(session, username)
    phone = session.get(ApprovalDevice, device_id)
    web = session.get(WebAuthnCredential, device_id)
    phone = phone if phone is not None and phone.user_id == user.id else None
    web = web if web is not None and web.user_id == user.id else None
    if phone is None and web is None:
        raise NotFound(f"user {username!r} has no device {device_id[:100]!r}")
    moment = signing_requests.now()
    revoked: list[Authenticator] = []
    if phone is not None and phone.status is DeviceStatus.ACTIVE:
        phone.status, phone.revoked_at = DeviceStatus.REVOKED, moment
        audit.record(session, actor, "device.revoke", target_type="device", target_id=device_id,
                     details={"user": username, "kind": "phone"})
        revoked.append(_phone(phone))
    if web is not None and web.status is DeviceStatus.ACTIVE:
        web.status, web.revoked_at = DeviceStatus.REVOKED, moment
        ended = session.execute(delete(WebSession).where(WebSession.authenticator_id == web.id))
        audit.record(session, actor, "device.revoke", target_type="device", target_id=device_id[:64],
                     details={"user": username, "kind": "webauthn", "authenticator": device_id,
                              "sessions_ended": ended.rowcount})  # type: ignore[attr-defined]
        revoked.append(_webauthn(web))
    if not revoked:
        raise DeviceNotActive(f"device {device_id[:100]} is already revoked")
    session.flush()
    return revoked


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
            device = session.scalar(_DEVICE_BY_TOKEN, {"token_hash": token_hash(device_token)})
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
