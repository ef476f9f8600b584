"""The Cloud Signature Consortium operations, independent of API version and field names.

``authorize`` opens a request bound to the given hashes and waits (bounded) for the signer's
confirmation; once approved it issues a Signature Activation Data token (SAD): random, stored
hashed, short lived, usable once, and only for exactly those hashes. ``sign_hash`` checks the
SAD and the signature algorithm, then signs through :mod:`broker.lifecycle.sole_control`.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import anyio.to_thread
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker.approvals import token_hash
from broker.audit import Actor
from broker.clients import ClientContext, visible_credential
from broker.credentials import delegated
from broker.db.engine import transaction
from broker.db.models import Credential, RequestItem, RequestState, SigningRequest
from broker.errors import InvalidInput, KysoError
from broker.lifecycle import load_limits, signing_requests, sole_control
from broker.lifecycle.waiting import wait_for_decision_async
from broker.notify import Notifier, request_topic, user_topic
from broker.settings import Settings
from ca_adapters import CaAdapter
from hsm import Hsm
from signer import SignerError
from signer.algorithms import DIGEST_OIDS, DIGEST_SIZES, SIGNATURE_OIDS, PssParams, SignatureScheme, digest_name

_HASH_BY_SIZE = {size: name for name, size in DIGEST_SIZES.items()}


class AccessDenied(KysoError):
    """The signer refused, did not answer in time, or the credential is locked."""

    code = "access_denied"
    status = 403


class SadExpired(KysoError):
    code = "expired_token"


class SadInvalid(KysoError):
    code = "invalid_sad"


REFUSALS = (KysoError, SignerError)
"""What a refused CSC call raises (HSM and provider failures are audited where they happen)."""


@dataclass(frozen=True)
class Authorisation:
    sad: str
    expires_in: int
    request_id: str


def key_algorithms(credential: Credential) -> list[str]:
    """``key.algo``: the signature algorithm OIDs this credential signs with."""
    scheme = SignatureScheme(credential.signature_scheme)
    if credential.delegated:  # the providers' APIs sign SHA-256 with PKCS#1 v1.5
        return ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.1"]
    if scheme is SignatureScheme.ECDSA:
        return ["1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4", "1.2.840.10045.2.1"]
    if scheme is SignatureScheme.RSA_PSS:
        return ["1.2.840.113549.1.1.10"]
    return ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13", "1.2.840.113549.1.1.1"]


def resolve_hash_algorithm(hash_oid: str | None, sign_oid: str | None, digests: list[bytes]) -> str:
    """The digest algorithm from ``hashAlgo``, else implied by ``signAlgo``, else by the hash size."""
    if hash_oid:
        if hash_oid not in DIGEST_OIDS:
            raise InvalidInput(f"unsupported hash algorithm {hash_oid}")
        name = DIGEST_OIDS[hash_oid]
    elif sign_oid and sign_oid in SIGNATURE_OIDS and SIGNATURE_OIDS[sign_oid][1]:
        name = str(SIGNATURE_OIDS[sign_oid][1])
    elif digests and len(digests[0]) in _HASH_BY_SIZE:
        name = _HASH_BY_SIZE[len(digests[0])]
    else:
        raise InvalidInput("the hash algorithm is missing and cannot be inferred")
    return digest_name(name)


async def authorize(
    factory: sessionmaker[Session],
    settings: Settings,
    notifier: Notifier,
    ctx: ClientContext,
    origin: str | None,
    credential_id: str,
    digests: list[bytes],
    hash_algorithm: str,
    num_signatures: int | None,
    description: str | None,
    wait_seconds: float,
    ca_for: Callable[[str], CaAdapter],
) -> Authorisation:
    """Open a request for these hashes and wait (bounded, holding no thread) for the signer."""
    ctx.require("sign")
    if num_signatures is not None and num_signatures != len(digests):
        raise InvalidInput(f"numSignatures is {num_signatures} but {len(digests)} hashes were given")
    actor = ctx.actor(origin)
    # The SAD is drawn now and stored hashed with the request, but handed out only once the signer
    # approved: it lives ``sad_seconds`` from that approval (no write after the decision).
    sad = secrets.token_urlsafe(32)
    try:
        request_id, user_id = await anyio.to_thread.run_sync(
            _open, factory, settings, ctx, actor, credential_id, digests, hash_algorithm, description, sad, ca_for)
    except REFUSALS as exc:
        if not hasattr(exc, "retry_after"):  # load shedding is counted in metrics, not written per call
            await anyio.to_thread.run_sync(functools.partial(
                audit.record_refusal, factory, actor, "csc.authorize", exc, target_type="credential",
                target_id=credential_id, details={"hashes": len(digests)}))
        raise
    notifier.notify(user_topic(user_id))
    # Unless decided sooner, the request ends at its expiry (it was just opened): the wait ends then too.
    state = await wait_for_decision_async(factory, notifier, request_id, actor,
                                          min(wait_seconds, settings.request_ttl_seconds + 0.05))
    if state is RequestState.PENDING:
        state = await anyio.to_thread.run_sync(_give_up, factory, actor, request_id)
        notifier.notify(request_topic(request_id), user_topic(user_id))  # off the signer's list
    if state is not RequestState.APPROVED:
        raise AccessDenied(f"the signer did not approve (request {request_id} is {state.value})")
    return Authorisation(sad, settings.sad_seconds, request_id)


def _open(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext, actor: Actor, credential_id: str,
          digests: list[bytes], hash_algorithm: str, description: str | None, sad: str,
          ca_for: Callable[[str], CaAdapter]) -> tuple[str, str]:
    """The pending request (forwarded to the provider for a delegated credential): its id and its signer's."""
    title = (description or "").strip()[:200] or "Tài liệu / document"
    docs = [signing_requests.DocumentToSign(d, f"{title} ({i + 1}/{len(digests)})" if len(digests) > 1 else title,
                                    f"{hash_algorithm} {d.hex()}") for i, d in enumerate(digests)]
    with transaction(factory) as session:
        load_limits.admit(session.connection(), settings, ctx.relying_system)
        credential = visible_credential(session, ctx, credential_id)
        if credential.delegated and hash_algorithm != "sha256":
            raise InvalidInput("a delegated credential signs SHA-256 hashes only (the provider's API)")
        request = signing_requests.create(session, settings, actor, credential, docs, relying_system=ctx.relying_system,
                                  provider=ca_for(credential.provider), hash_algorithm=hash_algorithm, client_id=ctx.client_id, sad_hash=token_hash(sad))
        request_id, user_id = request.id, request.user_id
        forward = credential.delegated
    if forward:
        delegated.forward(factory, ca_for, actor, request_id)
    return request_id, user_id


def _give_up(factory: sessionmaker[Session], actor: Actor, request_id: str) -> RequestState:
    """The wait ran out: cancel the request unless it was decided meanwhile; its state."""
    with transaction(factory) as session:
        try:
            signing_requests.cancel(session, actor, signing_requests.get(session, request_id))
        except signing_requests.RequestNotPending:
            pass
        return signing_requests.get(session, request_id).state


_BY_SAD = select(SigningRequest).where(SigningRequest.sad_hash == bindparam("sad_hash"))


def sign_hash(
    factory: sessionmaker[Session],
    settings: Settings,
    hsm: Hsm,
    ctx: ClientContext,
    origin: str | None,
    credential_id: str,
    sad: str,
    digests: list[bytes],
    hash_algorithm: str,
    sign_algo: str,
    sign_algo_params: bytes | None,
) -> list[bytes]:
    ctx.require("sign")
    actor = ctx.actor(origin)
    try:
        checked = _check_and_reserve(factory, settings, hsm, ctx, credential_id, sad, digests, hash_algorithm,
                                     sign_algo, sign_algo_params)
    except REFUSALS as exc:  # wrong hashes, a spent, expired or foreign SAD, a lost race: each one audited
        audit.record_refusal(factory, actor, "csc.sign_hash", exc, target_type="credential", target_id=credential_id,
                             details={"hashes": len(digests)})
        raise
    if checked.reservation is None:
        return delegated.release(factory, actor, checked.request_id)
    return sole_control.sign_reserved(factory, actor, checked.reservation, scheme=checked.scheme, pss=checked.pss)


@dataclass(frozen=True)
class _Checked:
    request_id: str
    reservation: sole_control.Reservation | None
    """None for a delegated credential: the provider signed, nothing is reserved in kyso's HSM."""
    scheme: SignatureScheme
    pss: PssParams | None


def _check_and_reserve(factory: sessionmaker[Session], settings: Settings, hsm: Hsm, ctx: ClientContext,
                       credential_id: str, sad: str, digests: list[bytes], hash_algorithm: str, sign_algo: str,
                       sign_algo_params: bytes | None) -> _Checked:
    """One transaction checks the SAD and reserves its hashes: a refused call reserves nothing."""
    with transaction(factory) as session:
        credential = visible_credential(session, ctx, credential_id)
        request = session.scalar(_BY_SAD, {"sad_hash": token_hash(sad)})
        if (request is None or request.credential_id != credential.id or request.client_id != ctx.client_id
                or not hmac.compare_digest(request.sad_hash or "", token_hash(sad))):
            raise SadInvalid("the SAD is unknown or belongs to another credential")
        if request.state is not RequestState.APPROVED:
            raise SadInvalid("the SAD was already used")
        if sad_expired(request, settings.sad_seconds):
            raise SadExpired("the SAD expired")
        if request.hash_algorithm != hash_algorithm:
            raise InvalidInput(f"the SAD covers {request.hash_algorithm} hashes, not {hash_algorithm}")
        scheme, pss = _signature_parameters(credential, sign_algo, sign_algo_params, hash_algorithm)
        if credential.delegated:  # delegated.release checks the unit where it hands the signatures out
            reservation = None
            covered = list(session.scalars(select(RequestItem.digest).where(RequestItem.request_id == request.id)
                                           .order_by(RequestItem.position)))
        else:
            reservation = sole_control.reserve(session, hsm, request)
            covered = reservation.digests
        if covered != digests:
            raise SadInvalid("the SAD does not cover exactly these hashes, in this order")
        return _Checked(request.id, reservation, scheme, pss)


def sad_expired(request: SigningRequest, sad_seconds: int) -> bool:
    """A SAD lives ``sad_seconds`` from the signer's approval."""
    return request.decided_at is None or signing_requests.aware(request.decided_at) + timedelta(seconds=sad_seconds) <= signing_requests.now()


def _signature_parameters(
    credential: Credential, sign_algo: str, params_der: bytes | None, hash_algorithm: str
) -> tuple[SignatureScheme, PssParams | None]:
    if sign_algo not in key_algorithms(credential):
        raise InvalidInput(f"signAlgo {sign_algo} is not offered by this credential")
    scheme, implied_hash = SIGNATURE_OIDS[sign_algo]
    if implied_hash is not None and implied_hash != hash_algorithm:
        raise InvalidInput(f"signAlgo {sign_algo} implies {implied_hash}, but the hashes are {hash_algorithm}")
    if scheme is not SignatureScheme.RSA_PSS:
        return scheme, None
    if not params_der:
        raise InvalidInput("RSA-PSS needs signAlgoParams (DER RSASSA-PSS-params)")
    pss = PssParams.from_der(params_der)
    if pss.hash_name != hash_algorithm:
        raise InvalidInput("the RSA-PSS parameters name another digest than the hashes")
    cert_bits = _key_bits(credential)
    pss.check_for_key(cert_bits)
    return scheme, pss


def _key_bits(credential: Credential) -> int:
    from asn1crypto import x509

    return int(x509.Certificate.load(credential.certificate).public_key.bit_size)
