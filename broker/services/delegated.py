"""Delegated credentials: the key stays at the provider, whose app is the signer's confirmation.

kyso links a provider's signer to a kyso user (the certificate and chain come from the provider's
API), forwards each request's data-to-be-signed to the provider, polls the provider's transaction
and maps its outcome onto the request's states. A provider's signature is checked against the
certificate before it is stored; formats are then built around it exactly as for hosted keys.
Nothing here touches kyso's HSM (DESIGN decision 26).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable

import httpx
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import (
    Credential,
    CredentialMode,
    CredentialStatus,
    ItemState,
    RequestItem,
    RequestState,
    SigningMode,
    SigningRequest,
)
from broker.errors import InvalidInput, KysoError, UnitInUsbTokenMode
from broker.services import signing_requests as requests
from broker.services.directory import get_user
from ca_adapters import CaAdapter
from ca_adapters.remote_clients import MisaClient, NacencommClient
from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderApiError,
    RemoteCredential,
    RemoteSigningClient,
    RemoteStatus,
)
from signer import Scheme

log = logging.getLogger("kyso.delegated")

_FINAL = {RemoteStatus.REJECTED: RequestState.REJECTED, RemoteStatus.EXPIRED: RequestState.EXPIRED,
          RemoteStatus.FAILED: RequestState.FAILED}


class ProviderUnavailable(KysoError):
    """The provider's signing API did not answer, or refused the request."""

    code = "provider_unavailable"


class NotDelegated(InvalidInput):
    code = "not_delegated"


# -- linking a provider's signer -------------------------------------------------------------------------


def client_for(ca: CaAdapter, credential: Credential) -> RemoteSigningClient:
    """The provider's API client, resumed with the signer's session where the provider needs one."""
    client = ca.remote_signing()
    ref = credential.provider_ref or {}
    if isinstance(client, MisaClient) and ref.get("session"):
        client.resume(ref["user_id"], ref["session"])
    return client


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
    if user.unit.signing_mode is not SigningMode.REMOTE:
        raise UnitInUsbTokenMode(f"unit {user.unit.code!r} signs with USB tokens; switch it to remote signing first")
    try:
        if isinstance(client, NacencommClient):
            remote = client.credential(provider_user_id, serial_hex)
        else:
            remote = client.credential(provider_user_id)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{ca.profile.display_name} did not answer: {type(exc).__name__}") from None
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
    ref = {"user_id": remote.user_id, "credential_ref": remote.credential_ref}
    if isinstance(client, MisaClient) and client.session(remote.user_id):
        ref["session"] = str(client.session(remote.user_id))
    credential = Credential(
        id=uuid.uuid4().hex, user=user, provider=ca.name, key_algorithm=f"rsa-{key.key_size}",
        signature_scheme=Scheme.RSA_PKCS1_V15.value, status=CredentialStatus.ACTIVE,
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
        request = requests.get(session, request_id)
        credential = request.credential
        remote = remote_credential(credential)
        digests = [DigestToSign(f"{request_id[:24]}-{i.position}", i.title, i.digest) for i in request.items]
        description = f"kyso {request.verification_code}: {request.items[0].title}"[:99]
        provider = credential.provider
        ca = ca_for(provider)
        client = client_for(ca, credential)
    try:
        transaction_id = client.start(remote, digests, description)
    except (ProviderApiError, httpx.HTTPError) as exc:
        reason = exc.message if isinstance(exc, ProviderApiError) else f"{ca.profile.display_name} did not answer"
        _fail(factory, actor, request_id, f"provider_refused: {reason}")
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


def follow(factory: sessionmaker[Session], ca_for: Callable[[str], CaAdapter], actor: Actor, request_id: str) -> RequestState:
    """Ask the provider where the request stands and move it accordingly; its state afterwards."""
    with read_transaction(factory) as session:
        request = requests.get(session, request_id)
        if request.state is not RequestState.PENDING or request.provider_transaction is None:
            return request.state
        credential = request.credential
        remote = remote_credential(credential)
        provider = credential.provider
        ca = ca_for(provider)
        client = client_for(ca, credential)
        transaction_id = request.provider_transaction
        expired_here = requests.aware(request.expires_at) <= requests.now()
        digests = [i.digest for i in request.items]
        certificate = credential.certificate
    try:
        if expired_here:
            if isinstance(client, NacencommClient):
                client.cancel(transaction_id)
            with transaction(factory) as session:
                requests.expire_if_due(session, actor, requests.get(session, request_id))
                return requests.get(session, request_id).state
        result = client.poll(remote, transaction_id)
    except (ProviderApiError, httpx.HTTPError) as exc:
        log.warning("provider poll for request %s failed: %s", request_id, type(exc).__name__)
        return RequestState.PENDING  # a transient failure: ask again next round
    finally:
        client.close()
    if result.status is RemoteStatus.PENDING:
        return RequestState.PENDING
    if result.status is RemoteStatus.SUCCESS:
        problem = _check_signatures(certificate, digests, list(result.signatures))
        if problem is None:
            _approve(factory, actor, request_id, provider, transaction_id, list(result.signatures))
            return RequestState.APPROVED
        _fail(factory, actor, request_id, f"provider_signature_invalid: {problem}")
        return RequestState.FAILED
    to = _FINAL[result.status]
    with transaction(factory) as session:
        request = requests.get(session, request_id)
        values = {"failure_reason": f"provider: {result.detail}"[:255]} if to is RequestState.FAILED else {}
        try:
            requests.transition(session, actor, request, to, decided_at=requests.now(),
                                decided_via=f"provider:{provider}",
                                details={"provider_status": result.status.value, "detail": result.detail[:64]},
                                **values)
        except requests.RequestNotPending:
            return request.state
        _void(session, request_id)
    return to


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
        request = requests.get(session, request_id)
        try:
            requests.transition(session, actor, request, RequestState.APPROVED, decided_at=requests.now(),
                                decided_via=f"provider:{provider}",
                                evidence={"kind": "provider", "provider": provider, "transaction": transaction_id},
                                details={"via": f"provider:{provider}"})
        except requests.RequestNotPending:
            return
        for item, signature in zip(request.items, signatures):
            session.execute(update(RequestItem).where(RequestItem.id == item.id, RequestItem.state == ItemState.PENDING)
                            .values(state=ItemState.CONSUMED, signature=signature))


def _fail(factory: sessionmaker[Session], actor: Actor, request_id: str, reason: str) -> None:
    with transaction(factory) as session:
        request = requests.get(session, request_id)
        try:
            requests.transition(session, actor, request, RequestState.FAILED, failure_reason=reason[:255],
                                details={"reason": reason.split(":")[0]})
        except requests.RequestNotPending:
            return
        _void(session, request_id)


def _void(session: Session, request_id: str) -> None:
    session.execute(update(RequestItem).where(RequestItem.request_id == request_id).values(state=ItemState.VOID))


def release(factory: sessionmaker[Session], actor: Actor, request_id: str) -> list[bytes]:
    """CSC ``signHash`` for a delegated credential: the provider's signatures, once (the SAD is used up)."""
    with transaction(factory) as session:
        request = requests.get(session, request_id)
        signatures = [i.signature for i in request.items]
        if any(s is None for s in signatures) or any(i.state is not ItemState.CONSUMED for i in request.items):
            raise ProviderUnavailable(f"request {request_id} has no signatures from the provider")
        requests.transition(session, actor, request, RequestState.SIGNED, expected=(RequestState.APPROVED,),
                            details={"signatures": len(signatures), "via": "provider"})
        return [bytes(s) for s in signatures if s is not None]

