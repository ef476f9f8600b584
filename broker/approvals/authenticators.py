"""WebAuthn for signers: register an authenticator with an activation code, sign in to the
approval page, and approve a request with an assertion whose challenge is the request's binding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from biometrics import Decision, ReplayedCounter
from biometrics.errors import BadProof
from biometrics.webauthn_ceremony import (
    RegisteredAuthenticator,
    RelyingParty,
    authentication_options,
    credential_id_of,
    registration_options,
    verify_assertion,
    verify_registration,
)
from broker import audit
from broker.approvals import (
    ActivationRefused,
    RequestExpired,
    apply_decision,
    attempt,
    redeem_activation_code,
    token_hash,
)
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import (
    ActivationCode,
    Credential,
    DeviceStatus,
    RequestState,
    SigningRequest,
    User,
    WebAuthnChallenge,
    WebAuthnCredential,
    WebSession,
)
from broker.errors import NotFound, PolicyViolation, Unauthenticated
from broker.lifecycle import signing_requests
from broker.settings import Settings

CHALLENGE_SECONDS = 300


class NotSignedIn(Unauthenticated):
    code = "not_signed_in"


class OriginRefused(PolicyViolation):
    code = "origin_refused"


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def check_origin(settings: Settings, origin: str | None, referer: str | None) -> None:
    """A state-changing call must come from one of the WebAuthn origins (Origin header, else Referer's)."""
    claimed = origin if origin is not None else referer
    allowed = {_origin_of(o) for o in settings.webauthn_origins} - {None}
    if claimed is None or _origin_of(claimed) not in allowed:
        shown = "none" if claimed is None else repr(claimed[:100])
        raise OriginRefused(f"a call from origin {shown} is refused: only the approval page's own origin may call")


def relying_party(settings: Settings) -> RelyingParty:
    return RelyingParty(settings.webauthn_rp_id, settings.webauthn_rp_name, tuple(settings.webauthn_origins))


def _new_challenge(session: Session, user: User | None, purpose: str) -> tuple[str, bytes]:
    challenge_id, challenge = uuid.uuid4().hex, secrets.token_bytes(32)
    session.add(WebAuthnChallenge(id=challenge_id, user_id=user.id if user else None, purpose=purpose, challenge=challenge,
                                  expires_at=signing_requests.now() + timedelta(seconds=CHALLENGE_SECONDS)))
    session.flush()
    return challenge_id, challenge


def _use_challenge(session: Session, challenge_id: str, purpose: str) -> WebAuthnChallenge:
    row = session.get(WebAuthnChallenge, challenge_id)
    moment = signing_requests.now()
    if row is None or row.purpose != purpose or row.used_at is not None or signing_requests.aware(row.expires_at) <= moment:
        raise BadProof("unknown, used or expired challenge")
    used = session.execute(update(WebAuthnChallenge)
                           .where(WebAuthnChallenge.id == challenge_id, WebAuthnChallenge.used_at.is_(None))
                           .values(used_at=moment))
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise BadProof("unknown, used or expired challenge")
    return row


def _authenticators(session: Session, user_id: int) -> list[WebAuthnCredential]:
    return list(session.scalars(select(WebAuthnCredential).where(WebAuthnCredential.user_id == user_id,
                                                                  WebAuthnCredential.status == DeviceStatus.ACTIVE)))


def _open_web_session(session: Session, settings: Settings, user: User, authenticator_id: str,
                      user_agent: str | None = None) -> str:
    token, moment = secrets.token_urlsafe(32), signing_requests.now()
    session.add(WebSession(token_hash=token_hash(token), user_id=user.id, authenticator_id=authenticator_id,
                           created_at=moment, last_seen_at=moment, user_agent=(user_agent or "")[:255] or None,
                           expires_at=moment + timedelta(seconds=settings.web_session_seconds)))
    return token


def _live_session(session: Session, token: str | None) -> WebSession:
    row = session.get(WebSession, token_hash(token)) if token else None
    if row is None or signing_requests.aware(row.expires_at) <= signing_requests.now() or row.authenticator_id is None:
        raise NotSignedIn("sign in with your authenticator first")
    opener = session.get(WebAuthnCredential, row.authenticator_id)
    if opener is None or opener.user_id != row.user_id or opener.status is not DeviceStatus.ACTIVE:
        raise NotSignedIn("sign in with your authenticator first")
    return row


def web_session_user(session: Session, token: str | None) -> User:
    """The signed-in user, while the session lasts and the authenticator that opened it is active."""
    return _live_session(session, token).user


SLIDE_EVERY = timedelta(seconds=60)
"""A session's expiry moves forward at most this often: a long poll every second is not a write."""


def resume_web_session(session: Session, settings: Settings, token: str | None) -> tuple[User, datetime]:
    """The signed-in user, the session's expiry slid forward by its use (never past its maximum age),
    and the new expiry, for the cookie."""
    row = _live_session(session, token)
    moment = signing_requests.now()
    started = signing_requests.aware(row.created_at) if row.created_at else moment
    until = min(moment + timedelta(seconds=settings.web_session_seconds),
                started + timedelta(seconds=settings.web_session_max_seconds))
    expires = signing_requests.aware(row.expires_at)
    if until - expires >= SLIDE_EVERY:
        row.expires_at, row.last_seen_at, expires = until, moment, until
    return row.user, expires


def session_id(row: WebSession) -> str:
    """A session's public name: derived from the token's hash, which itself never leaves the server."""
    return hashlib.sha256(b"kyso web session\0" + row.token_hash.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class WebSessionView:
    id: str
    authenticator_id: str | None
    authenticator: str
    created_at: datetime | None
    last_seen_at: datetime | None
    expires_at: datetime
    user_agent: str | None
    current: bool


def list_web_sessions(session: Session, user_id: int, current_token: str | None) -> list[WebSessionView]:
    """The signer's open sessions, newest first, each with the authenticator that opened it."""
    moment, current = signing_requests.now(), token_hash(current_token) if current_token else None
    rows = session.scalars(select(WebSession).where(WebSession.user_id == user_id))
    found = []
    for row in rows:
        if signing_requests.aware(row.expires_at) <= moment or row.authenticator_id is None:
            continue
        opener = session.get(WebAuthnCredential, row.authenticator_id)
        if opener is None or opener.status is not DeviceStatus.ACTIVE:
            continue
        found.append(WebSessionView(
            session_id(row), row.authenticator_id, opener.name,
            signing_requests.aware(row.created_at) if row.created_at else None,
            signing_requests.aware(row.last_seen_at) if row.last_seen_at else None,
            signing_requests.aware(row.expires_at), row.user_agent, row.token_hash == current))
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(found, key=lambda v: (v.created_at or epoch, v.id), reverse=True)


def end_web_session(session: Session, actor: Actor, user: User, wanted: str) -> None:
    """End one of the signer's own sessions, by its public id; audited."""
    for row in session.scalars(select(WebSession).where(WebSession.user_id == user.id)):
        if hmac.compare_digest(session_id(row), wanted):
            session.delete(row)
            audit.record(session, actor, "webauthn.session_end", target_type="user", target_id=user.username,
                         details={"session": wanted, "authenticator": row.authenticator_id})
            return
    raise NotFound(f"no session {wanted[:64]!r}")


# -- registration -------------------------------------------------------------------------------------


def start_registration(session: Session, settings: Settings, code: str) -> tuple[str, str]:
    row = session.scalar(select(ActivationCode).where(ActivationCode.code_hash == token_hash(code.strip().upper())))
    if row is None or row.used_at is not None or signing_requests.aware(row.expires_at) <= signing_requests.now():
        raise ActivationRefused("unknown, used or expired activation code")
    user = row.user
    challenge_id, challenge = _new_challenge(session, user, "register")
    options = registration_options(
        relying_party(settings), user_handle=hashlib.sha256(f"kyso-user-{user.id}".encode()).digest(),
        user_name=user.username, display_name=user.full_name, challenge=challenge,
        exclude=[a.id for a in _authenticators(session, user.id)],
    )
    return challenge_id, options


def finish_registration(
    session: Session, settings: Settings, actor: Actor, challenge_id: str, code: str, credential_json: str,
    name: str | None = None, user_agent: str | None = None,
) -> tuple[User, str]:
    """Verify the attestation (user verification required), use up the code, sign the user in."""
    challenge = _use_challenge(session, challenge_id, "register")
    registered = verify_registration(relying_party(settings), credential_json, challenge.challenge)
    if len(registered.credential_id) > 255:  # the column's size; WebAuthn allows ids of up to 1023 bytes
        raise BadProof("this authenticator's credential id is too long to register")
    user = redeem_activation_code(session, code)
    if user.id != challenge.user_id:
        raise ActivationRefused("the activation code belongs to another user")
    label = (name or "").strip()[:128] or "browser authenticator"
    session.add(WebAuthnCredential(id=registered.credential_id, user_id=user.id, public_key=registered.public_key,
                                   sign_count=registered.sign_count, status=DeviceStatus.ACTIVE, name=label))
    session.flush()
    audit.record(session, actor, "webauthn.register", target_type="user", target_id=user.username,
                 details={"authenticator": registered.credential_id, "name": label})
    return user, _open_web_session(session, settings, user, registered.credential_id, user_agent)


# -- sign-in --------------------------------------------------------------------------------------------


def start_login(session: Session, settings: Settings, username: str) -> tuple[str, str]:
    """Sign-in options. An unknown user, a user without an authenticator and one with answer alike
    (decoy credential ids stand in for missing ones), so the page does not tell who is enrolled."""
    user = session.scalar(select(User).where(User.username == username))
    allowed = [a.id for a in _authenticators(session, user.id)] if user is not None else []
    challenge_id, challenge = _new_challenge(session, user, "login")
    return challenge_id, authentication_options(relying_party(settings), challenge,
                                                allowed or [_decoy_credential_id(settings, username)])


def _decoy_credential_id(settings: Settings, username: str) -> str:
    """A credential id no authenticator has, the same for a username at every ask (and in every worker)."""
    key = hashlib.sha256(b"kyso sign-in decoy ids\0" + settings.user_pin().encode()).digest()
    return base64.urlsafe_b64encode(hmac.new(key, username.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()


def _check_assertion(session: Session, settings: Settings, user_id: int | None, credential_json: str,
                     challenge: bytes) -> str:
    """Verify an assertion by one of the user's active authenticators; move its sign count forward."""
    credential_id = credential_id_of(credential_json)
    authenticator = session.get(WebAuthnCredential, credential_id)
    if authenticator is None or authenticator.user_id != user_id or authenticator.status is not DeviceStatus.ACTIVE:
        raise BadProof("this authenticator is not registered to this signer")
    new_count = verify_assertion(relying_party(settings), credential_json, challenge,
                                 RegisteredAuthenticator(authenticator.id, authenticator.public_key,
                                                         authenticator.sign_count))
    moved = session.execute(update(WebAuthnCredential)
                            .where(WebAuthnCredential.id == credential_id,
                                   WebAuthnCredential.sign_count == authenticator.sign_count)
                            .values(sign_count=new_count))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise ReplayedCounter("the authenticator's sign count changed meanwhile")
    return credential_id


def finish_login(session: Session, settings: Settings, actor: Actor, challenge_id: str, credential_json: str,
                 user_agent: str | None = None) -> tuple[User, str]:
    challenge = _use_challenge(session, challenge_id, "login")
    # A sign-in started for an unknown user has no user: the check below refuses it like a stranger's key.
    credential_id = _check_assertion(session, settings, challenge.user_id, credential_json, challenge.challenge)
    user = session.get(User, challenge.user_id)
    assert user is not None
    audit.record(session, actor, "webauthn.login", target_type="user", target_id=user.username,
                 details={"authenticator": credential_id})
    return user, _open_web_session(session, settings, user, credential_id, user_agent)


# -- approving a request ------------------------------------------------------------------------------


def approval_options(session: Session, settings: Settings, user: User, request_id: str) -> str:
    """Assertion options whose challenge is the request's binding, limited to the signer's authenticators."""
    request = session.get(SigningRequest, request_id)
    if request is None or request.user_id != user.id:
        raise NotFound(f"no signing request {request_id!r}")
    return authentication_options(relying_party(settings), request.binding, [a.id for a in _authenticators(session, user.id)])


def decide_with_webauthn(
    factory: sessionmaker[Session], settings: Settings, origin: str | None, user_id: int, username: str,
    request_id: str, decision: Decision, credential_json: str | None,
) -> SigningRequest:
    """Approve with an assertion over the binding (kept as evidence), or refuse (final)."""
    actor = Actor("webauthn", username, origin)

    def body(session: Session) -> SigningRequest:
        request = session.get(SigningRequest, request_id)
        if request is None or request.user_id != user_id:
            raise NotFound(f"no signing request {request_id!r}")
        if request.state is RequestState.EXPIRED:
            raise RequestExpired(f"request {request_id} expired")
        if request.state is not RequestState.PENDING:
            raise signing_requests.RequestNotPending(f"request {request_id} is {request.state.value}")
        evidence: dict[str, object] = {"kind": "webauthn", "decision": decision.value}
        via = f"webauthn-session:{username}"
        if decision is Decision.APPROVE:
            credential = session.get(Credential, request.credential_id)
            assert credential is not None
            signing_requests.check_not_locked(credential, signing_requests.now())
            if not credential_json:
                raise BadProof("an approval needs a WebAuthn assertion")
            authenticator_id = _check_assertion(session, settings, user_id, credential_json, request.binding)
            evidence |= {"authenticator": authenticator_id, "assertion": credential_json}
            via = f"webauthn:{authenticator_id}"
        apply_decision(session, actor, request, decision, via=via, evidence=evidence)
        return request

    return attempt(factory, settings, actor, f"request.{decision.value}", request_id, body)


def sign_out(session: Session, token: str | None) -> None:
    if token:
        row = session.get(WebSession, token_hash(token))
        if row is not None:
            session.delete(row)


def web_user(factory: sessionmaker[Session], token: str | None) -> tuple[int, str]:
    with transaction(factory) as session:
        user = web_session_user(session, token)
        return user.id, user.username
