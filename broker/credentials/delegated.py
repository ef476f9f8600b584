"""Delegated credentials: the key stays at the provider, whose app is the signer's confirmation.

kyso links a provider's signer to a kyso user (the certificate and chain come from the provider's
API), forwards each request's data-to-be-signed to the provider, polls the provider's transaction
and maps its outcome onto the request's states. A provider's signature is checked against the
certificate before it is stored; formats are then built around it exactly as for hosted keys.
Nothing here touches kyso's HSM: the provider's app is the signer's confirmation.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker import credentials as credential_service
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import (
    Credential,
    CredentialMode,
    CredentialStatus,
    ItemState,
    RequestItem,
    RequestState,
    SigningRequest,
)
from broker.directory import get_user
from broker.errors import InvalidInput, Unavailable
from broker.lifecycle import signing_requests
from ca_adapters import CaAdapter
from ca_adapters.remote_clients.nacencomm import NacencommClient
from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderApiError,
    ProviderSessionRevoked,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
)
from signer import SignatureScheme

log = logging.getLogger("kyso.delegated")

_FINAL = {RemoteStatus.REJECTED: RequestState.REJECTED, RemoteStatus.EXPIRED: RequestState.EXPIRED,
          RemoteStatus.FAILED: RequestState.FAILED}


class ProviderUnavailable(Unavailable):
    """The provider's signing API did not answer, or refused the request."""

    code = "provider_unavailable"


class NotDelegated(InvalidInput):
    code = "not_delegated"


# -- linking a provider's signer -------------------------------------------------------------------------


def client_for(ca: CaAdapter, credential: Credential) -> RemoteSigningClient:
    """The provider's API client, resumed with the signer's session where the provider needs one."""
    client = ca.remote_signing()
    ref = credential.provider_ref or {}
    if ref.get("session"):
        client.resume(ref["user_id"], ref["session"])
    return client


def _keep_session(factory: sessionmaker[Session], credential_id: str, client: RemoteSigningClient,
                  user_id: str, before: Any) -> None:
    """The provider renewed the signer's session (MISA's refresh): keep the new one, no password needed."""
    after = client.session_state(user_id)
    if after is None or after == before:
        return
    with transaction(factory) as session:
        credential = session.get(Credential, credential_id)
        if credential is not None:
            credential.provider_ref = {**(credential.provider_ref or {}), "session": after}
            audit.record(session, Actor("system", "provider-session"), "credential.session_renewed",
                         target_type="credential", target_id=credential_id, details={"provider": credential.provider})


def remote_credential(credential: Credential) -> RemoteCredential:
    ref = credential.provider_ref or {}
    if credential.mode is not CredentialMode.DELEGATED or "user_id" not in ref:
        raise NotDelegated(f"credential {credential.id!r} is not a delegated credential")
    chain = (credential.certificate, *(base64.b64decode(c) for c in credential.chain))
    return RemoteCredential(ref["user_id"], ref["credential_ref"], chain)


def link(session: Session, actor: Actor, ca: CaAdapter, client: RemoteSigningClient, *, username: str,
         provider_user_id: str, serial_hex: str = "") -> Credential:
    """Register the provider's certificate for ``provider_user_id`` as a delegated credential of ``username``.

    ``client`` is already signed in where the provider needs it (MISA's second factor).
    """
    user = get_user(session, username)
    credential_service.check_unit_remote(user.unit)
    try:
        # By serial when given, else a personal, valid certificate: never an organisation seal.
        # (Nacencomm names its certificates by an integer id, given here in place of the serial.)
        remote = client.credential(provider_user_id, serial_hex)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{ca.profile.display_name} did not answer: {type(exc).__name__}") from exc
    cert = x509.load_der_x509_certificate(remote.chain_der[0])
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidInput(f"{ca.profile.display_name} returned a non-RSA certificate; delegated mode signs RSA")
    if not _issued_under(remote.chain_der, ca.trust_anchors()):
        raise InvalidInput(f"the certificate from {ca.profile.display_name} does not chain to its root")
    serial = f"{cert.serial_number:x}"
    existing = session.scalar(select(Credential).where(Credential.provider == ca.name, Credential.serial_hex == serial))
    if existing is not None:
        raise InvalidInput(f"certificate {serial} of {ca.profile.display_name} is already credential {existing.id}")
    asn1_cert = asn1_x509.Certificate.load(remote.chain_der[0])
    ref: dict[str, Any] = {"user_id": remote.user_id, "credential_ref": remote.credential_ref}
    if (provider_session := client.session_state(remote.user_id)) is not None:
        ref["session"] = provider_session  # kept so that signing goes on without the signer's password
    credential = Credential(
        id=uuid.uuid4().hex, user=user, provider=ca.name, key_algorithm=f"rsa-{key.key_size}",
        signature_scheme=SignatureScheme.RSA_PKCS1_V15.value, status=CredentialStatus.ACTIVE,
        certificate=remote.chain_der[0], chain=[base64.b64encode(c).decode() for c in remote.chain_der[1:]],
        serial_hex=serial, subject=asn1_cert.subject.human_friendly,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        mode=CredentialMode.DELEGATED, provider_ref=ref,
    )
    session.add(credential)
    session.flush()
    audit.record(session, actor, "credential.link", target_type="credential", target_id=credential.id,
                 details={"user": username, "provider": ca.name, "provider_user": remote.user_id, "serial": serial,
                          "mode": "delegated"})
    return credential


def _issued_under(chain_der: tuple[bytes, ...], anchors: list[bytes]) -> bool:
    """The last certificate of ``chain_der`` is one of ``anchors`` or was signed by one."""
    last = x509.load_der_x509_certificate(chain_der[-1])
    for der in anchors:
        root = x509.load_der_x509_certificate(der)
        try:
            last.verify_directly_issued_by(root)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


# -- forwarding a request and following it at the provider --------------------------------------------------


def forward(factory: sessionmaker[Session], ca_for: Callable[[str], CaAdapter], actor: Actor, request_id: str) -> None:
    """Send the request's data-to-be-signed to the provider; on refusal the request ends ``failed``."""
    with read_transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        credential = request.credential
        remote = remote_credential(credential)
        digests = [DigestToSign(_document_id(request_id, i.position), i.title, i.digest) for i in request.items]
        description = f"kyso {request.verification_code}: {request.items[0].title}"[:99]
        provider = credential.provider
        credential_id = credential.id
        session_before = (credential.provider_ref or {}).get("session")
        ca = ca_for(provider)
        client = client_for(ca, credential)
    try:
        transaction_id = client.start(remote, digests, description)
        _keep_session(factory, credential_id, client, remote.user_id, session_before)
    except (ProviderApiError, httpx.HTTPError) as exc:
        reason = exc.message if isinstance(exc, ProviderApiError) else f"{ca.profile.display_name} did not answer"
        code = exc.code if isinstance(exc, ProviderApiError) else "provider_refused"
        _fail(factory, actor, request_id, f"{'provider_refused' if code == 'provider_api_error' else code}: {reason}")
        return
    finally:
        client.close()
    with transaction(factory) as session:
        session.execute(update(SigningRequest).where(SigningRequest.id == request_id)
                        .values(provider_transaction=transaction_id))
        audit.record(session, actor, "request.forwarded", target_type="request", target_id=request_id,
                     details={"provider": provider, "transaction": transaction_id})


def pending(factory: sessionmaker[Session]) -> list[str]:
    """Requests waiting for a provider's answer."""
    with read_transaction(factory) as session:
        return list(session.scalars(select(SigningRequest.id).where(
            SigningRequest.state == RequestState.PENDING, SigningRequest.provider_transaction.is_not(None))))


_poll_lock = threading.Lock()
_next_poll: dict[str, float] = {}
_reported: set[tuple[str, str]] = set()


def _poll_due(request_id: str, every: float) -> bool:
    """At most one poll per transaction every ``every`` seconds: the provider's documented cadence."""
    now = time.monotonic()
    with _poll_lock:
        if _next_poll.get(request_id, 0.0) > now:
            return False
        _next_poll[request_id] = now + every
        return True


def _forget(request_id: str) -> None:
    with _poll_lock:
        _next_poll.pop(request_id, None)
        for key in [k for k in _reported if k[0] == request_id]:
            _reported.discard(key)


def _anomaly(factory: sessionmaker[Session], actor: Actor, request_id: str, provider: str, kind: str,
             detail: str) -> None:
    """Audit, once per request and kind, that the provider answered outside its documented shapes."""
    with _poll_lock:
        if (request_id, kind) in _reported:
            return
        _reported.add((request_id, kind))
    log.warning("provider %s, request %s: %s", provider, request_id, kind)
    with transaction(factory) as session:
        audit.record(session, actor, "request.provider_anomaly", outcome="refused", target_type="request",
                     target_id=request_id, details={"provider": provider, "kind": kind, "detail": detail[:120]})


def follow(factory: sessionmaker[Session], ca_for: Callable[[str], CaAdapter], actor: Actor, request_id: str) -> RequestState:
    """Ask the provider where the request stands (at its cadence) and move it accordingly; its state afterwards.

    The fallback when the provider calls back (:mod:`broker.credentials.provider_callbacks`): both feed
    :func:`apply_result`.
    """
    with read_transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        if request.state is not RequestState.PENDING or request.provider_transaction is None:
            _forget(request_id)
            return request.state
        credential = request.credential
        remote = remote_credential(credential)
        provider = credential.provider
        credential_id = credential.id
        session_before = (credential.provider_ref or {}).get("session")
        ca = ca_for(provider)
        client = client_for(ca, credential)
        transaction_id = request.provider_transaction
        expired_here = signing_requests.aware(request.expires_at) <= signing_requests.now()
    try:
        if expired_here:
            if isinstance(client, NacencommClient):
                client.cancel(transaction_id)
            _forget(request_id)
            with transaction(factory) as session:
                signing_requests.expire_if_due(session, actor, signing_requests.get(session, request_id))
                return signing_requests.get(session, request_id).state
        if not _poll_due(request_id, client.poll_seconds):
            return RequestState.PENDING
        result = client.poll(remote, transaction_id)
        _keep_session(factory, credential_id, client, remote.user_id, session_before)
    except ProviderSessionRevoked as exc:
        result = RemoteResult(RemoteStatus.FAILED, detail=exc.message)
    except (ProviderApiError, httpx.HTTPError) as exc:
        # Transient, or a reply outside the documented shapes: still pending, asked again, audited once.
        kind = exc.code if isinstance(exc, ProviderApiError) else f"no_answer:{type(exc).__name__}"
        _anomaly(factory, actor, request_id, provider, kind, exc.message if isinstance(exc, ProviderApiError) else kind)
        return RequestState.PENDING
    finally:
        client.close()
    return apply_result(factory, actor, request_id, provider, transaction_id, result)


def apply_result(factory: sessionmaker[Session], actor: Actor, request_id: str, provider: str, transaction_id: str,
                 result: RemoteResult) -> RequestState:
    """Move a pending request by the provider's outcome (polled or called back); its state afterwards.

    Nothing becomes approved without signatures that verify against the credential's certificate.
    """
    if result.anomaly:
        _anomaly(factory, actor, request_id, provider, result.anomaly, result.detail)
    if result.status is RemoteStatus.PENDING:
        return RequestState.PENDING
    with read_transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        if request.state is not RequestState.PENDING:
            return request.state
        items = list(request.items)
        certificate = request.credential.certificate
    digests = [i.digest for i in items]
    _forget(request_id)
    if result.status is RemoteStatus.SUCCESS:
        signatures = _in_our_order(request_id, [i.position for i in items], result)
        problem = _check_signatures(certificate, digests, signatures)
        if problem is None:
            _approve(factory, actor, request_id, provider, transaction_id, signatures)
            return RequestState.APPROVED
        _fail(factory, actor, request_id, f"provider_signature_invalid: {problem}")
        return RequestState.FAILED
    to = _FINAL[result.status]
    with transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        values = {"failure_reason": f"provider: {result.detail}"[:255]} if to is RequestState.FAILED else {}
        try:
            signing_requests.transition(session, actor, request, to, decided_at=signing_requests.now(),
                                decided_via=f"provider:{provider}",
                                details={"provider_status": result.status.value, "detail": result.detail[:64]},
                                **values)
        except signing_requests.RequestNotPending:
            return request.state
        _void(session, request_id)
    return to


def _document_id(request_id: str, position: int) -> str:
    return f"{request_id[:24]}-{position}"


def _in_our_order(request_id: str, positions: list[int], result: RemoteResult) -> list[bytes]:
    """The provider's signatures in the request's item order, by the document ids it echoes when it does."""
    signatures = list(result.signatures)
    if not result.document_ids or len(result.document_ids) != len(signatures):
        return signatures
    by_id = dict(zip(result.document_ids, signatures))
    wanted = [_document_id(request_id, p) for p in positions]
    if set(wanted) != set(by_id):
        return signatures  # ids the provider shortened or renamed: its order stands (and is verified)
    return [by_id[w] for w in wanted]


def _check_signatures(certificate_der: bytes, digests: list[bytes], signatures: list[bytes]) -> str | None:
    """Why the provider's signatures are not exactly ours to accept, or None."""
    if len(signatures) != len(digests):
        return f"{len(signatures)} signatures for {len(digests)} hashes"
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    for n, (digest, signature) in enumerate(zip(digests, signatures)):
        try:
            key.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        except InvalidSignature:
            return f"signature {n} does not verify with the certificate"
    return None


def _approve(factory: sessionmaker[Session], actor: Actor, request_id: str, provider: str, transaction_id: str,
             signatures: list[bytes]) -> None:
    """The signer approved in the provider's app: the request is approved and its signatures stored."""
    with transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        try:
            signing_requests.transition(session, actor, request, RequestState.APPROVED, decided_at=signing_requests.now(),
                                decided_via=f"provider:{provider}",
                                evidence={"kind": "provider", "provider": provider, "transaction": transaction_id},
                                details={"via": f"provider:{provider}"})
        except signing_requests.RequestNotPending:
            return
        for item, signature in zip(request.items, signatures):
            session.execute(update(RequestItem).where(RequestItem.id == item.id, RequestItem.state == ItemState.PENDING)
                            .values(state=ItemState.CONSUMED, signature=signature))


def _fail(factory: sessionmaker[Session], actor: Actor, request_id: str, reason: str) -> None:
    with transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        try:
            signing_requests.transition(session, actor, request, RequestState.FAILED, failure_reason=reason[:255],
                                details={"reason": reason.split(":")[0]})
        except signing_requests.RequestNotPending:
            return
        _void(session, request_id)


def _void(session: Session, request_id: str) -> None:
    session.execute(update(RequestItem).where(RequestItem.request_id == request_id).values(state=ItemState.VOID))


def release(factory: sessionmaker[Session], actor: Actor, request_id: str) -> list[bytes]:
    """CSC ``signHash`` for a delegated credential: the provider's signatures, once (the SAD is used up)."""
    with transaction(factory) as session:
        request = signing_requests.get(session, request_id)
        credential_service.check_signing_allowed(request.credential)
        signatures = [i.signature for i in request.items]
        if any(s is None for s in signatures) or any(i.state is not ItemState.CONSUMED for i in request.items):
            raise ProviderUnavailable(f"request {request_id} has no signatures from the provider")
        signing_requests.transition(session, actor, request, RequestState.SIGNED, expected=(RequestState.APPROVED,),
                            details={"signatures": len(signatures), "via": "provider"})
        return [bytes(s) for s in signatures if s is not None]

