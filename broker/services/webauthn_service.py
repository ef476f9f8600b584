"""WebAuthn for signers: register an authenticator with an activation code, sign in to the
approval page, and approve a request with an assertion whose challenge is the request's binding.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

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
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import (
    ActivationCode,
    DeviceStatus,
    RequestState,
    SigningRequest,
    User,
    WebAuthnChallenge,
    WebAuthnCredential,
    WebSession,
)
from broker.errors import KysoError, NotFound
from broker.services import signing_requests as requests
from broker.services.approvals import (
    ActivationRefused,
    RequestExpired,
    apply_decision,
    attempt,
    redeem_activation_code,
    token_hash,
)
from broker.services.directory import get_user
from broker.settings import Settings

CHALLENGE_SECONDS = 300


class NotSignedIn(KysoError):
    code = "not_signed_in"


def relying_party(settings: Settings) -> RelyingParty:
    return RelyingParty(settings.webauthn_rp_id, settings.webauthn_rp_name, tuple(settings.webauthn_origins))


def _new_challenge(session: Session, user: User, purpose: str) -> tuple[str, bytes]:
    challenge_id, challenge = uuid.uuid4().hex, secrets.token_bytes(32)
    session.add(WebAuthnChallenge(id=challenge_id, user_id=user.id, purpose=purpose, challenge=challenge,
                                  expires_at=requests.now() + timedelta(seconds=CHALLENGE_SECONDS)))
    session.flush()
    return challenge_id, challenge


def _use_challenge(session: Session, challenge_id: str, purpose: str) -> WebAuthnChallenge:
    row = session.get(WebAuthnChallenge, challenge_id)
    moment = requests.now()
    if row is None or row.purpose != purpose or row.used_at is not None or requests.aware(row.expires_at) <= moment:
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


def _open_web_session(session: Session, settings: Settings, user: User) -> str:
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=token_hash(token), user_id=user.id,
                           expires_at=requests.now() + timedelta(seconds=settings.web_session_seconds)))
    return token


def web_session_user(session: Session, token: str | None) -> User:
    row = session.get(WebSession, token_hash(token)) if token else None
    if row is None or requests.aware(row.expires_at) <= requests.now():
        raise NotSignedIn("sign in with your authenticator first")
    return row.user


# -- registration -------------------------------------------------------------------------------------


def start_registration(session: Session, settings: Settings, code: str) -> tuple[str, str]:
    row = session.scalar(select(ActivationCode).where(ActivationCode.code_hash == token_hash(code.strip().upper())))
    if row is None or row.used_at is not None or requests.aware(row.expires_at) <= requests.now():
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
    session: Session, settings: Settings, actor: Actor, challenge_id: str, code: str, credential_json: str
) -> tuple[User, str]:
    """Verify the attestation (user verification required), use up the code, sign the user in."""
    challenge = _use_challenge(session, challenge_id, "register")
    registered = verify_registration(relying_party(settings), credential_json, challenge.challenge)
    user = redeem_activation_code(session, code)
    if user.id != challenge.user_id:
        raise ActivationRefused("the activation code belongs to another user")
    session.add(WebAuthnCredential(id=registered.credential_id, user_id=user.id, public_key=registered.public_key,
                                   sign_count=registered.sign_count, status=DeviceStatus.ACTIVE))
    session.flush()
    audit.record(session, actor, "webauthn.register", target_type="user", target_id=user.username,
                 details={"authenticator": registered.credential_id})
    return user, _open_web_session(session, settings, user)


# -- sign-in --------------------------------------------------------------------------------------------


def start_login(session: Session, settings: Settings, username: str) -> tuple[str, str]:
    user = get_user(session, username)
    allowed = _authenticators(session, user.id)
    if not allowed:
        raise NotFound(f"user {username!r} has no registered authenticator")
    challenge_id, challenge = _new_challenge(session, user, "login")
    return challenge_id, authentication_options(relying_party(settings), challenge, [a.id for a in allowed])


def _check_assertion(session: Session, settings: Settings, user_id: int, credential_json: str, challenge: bytes) -> str:
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


def finish_login(session: Session, settings: Settings, actor: Actor, challenge_id: str, credential_json: str) -> tuple[User, str]:
    challenge = _use_challenge(session, challenge_id, "login")
    credential_id = _check_assertion(session, settings, challenge.user_id, credential_json, challenge.challenge)
    user = session.get(User, challenge.user_id)
    assert user is not None
    audit.record(session, actor, "webauthn.login", target_type="user", target_id=user.username,
                 details={"authenticator": credential_id})
    return user, _open_web_session(session, settings, user)


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
            raise requests.RequestNotPending(f"request {request_id} is {request.state.value}")
        evidence: dict[str, object] = {"kind": "webauthn", "decision": decision.value}
        via = f"webauthn-session:{username}"
        if decision is Decision.APPROVE:
            from broker.db.models import Credential

            credential = session.get(Credential, request.credential_id)
            assert credential is not None
            requests.check_not_locked(credential, requests.now())
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
