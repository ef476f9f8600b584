"""Approval devices: activation codes, enrolling a phone, the device token every phone call
presents, and listing or revoking a signer's phones and WebAuthn authenticators."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session

from biometrics import ConfirmationError
from biometrics.device import load_device_key
from broker import audit
from broker.audit import Actor
from broker.db.models import ActivationCode, ApprovalDevice, DeviceStatus, User, WebAuthnCredential, WebSession
from broker.directory import get_user
from broker.errors import InvalidInput, KysoError, NotFound
from broker.lifecycle import signing_requests
from broker.settings import Settings, loopback_as_localhost


class DeviceNotActive(KysoError):
    code = "device_not_active"
    status = 403


class ActivationRefused(KysoError):
    code = "activation_refused"
    status = 403


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


def find_device(session: Session, token: str) -> ApprovalDevice | None:
    """The device holding ``token``, active or not; None for an unknown token (what a decision,
    which audits who tried, needs)."""
    device = session.scalar(_DEVICE_BY_TOKEN, {"token_hash": token_hash(token)})
    # The lookup is by hash; compare again in constant time for good measure.
    return device if device is not None and hmac.compare_digest(device.token_hash, token_hash(token)) else None


def device_user_for_token(connection: Connection, token: str) -> int:
    """The signer whose active device holds ``token``: one Core read, what each phone poll asks."""
    found = connection.execute(_DEVICE_USER_BY_TOKEN, {"token_hash": token_hash(token)}).first()
    if found is None or not hmac.compare_digest(found.token_hash, token_hash(token)):
        raise DeviceNotActive("unknown device token")
    if found.status is not DeviceStatus.ACTIVE:
        raise DeviceNotActive("this device was revoked")
    return int(found.user_id)


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
