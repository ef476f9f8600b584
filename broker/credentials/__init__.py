"""Credentials: a key made in the HSM, certified by a provider, stored with its chain."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from asn1crypto import x509 as asn1_x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Actor
from broker.db.models import Credential, CredentialMode, CredentialStatus, SigningMode, Unit, User
from broker.directory import check_user_enabled, get_user
from broker.errors import (
    Conflict,
    CredentialNotUsable,
    InvalidInput,
    NotFound,
    UnitInUsbTokenMode,
)
from ca_adapters import CaAdapter, CertificateUnknown, RevocationReason, Subject
from ca_adapters.remote_clients import CLIENTS
from hsm import Hsm, HsmError, KeyAlgorithm, SignatureScheme
from signer.csr import build_csr
from signer.errors import CertificateRevoked
from signer.hsm_signer import HsmKeySigner
from signer.pipeline import SigningMaterial


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_key_algorithm(value: str) -> KeyAlgorithm:
    try:
        return KeyAlgorithm(value)
    except ValueError as exc:
        known = ", ".join(a.value for a in KeyAlgorithm)
        raise InvalidInput(f"unknown key algorithm {value!r}; known: {known}") from exc


def parse_scheme(value: str, algorithm: KeyAlgorithm) -> SignatureScheme:
    try:
        scheme = SignatureScheme(value)
    except ValueError as exc:
        raise InvalidInput(f"unknown signature scheme {value!r}; known: rsa-pkcs1v15, rsa-pss, ecdsa") from exc
    if algorithm.is_rsa == (scheme is SignatureScheme.ECDSA):
        raise InvalidInput(f"{scheme.value} does not fit a {algorithm.value} key")
    return scheme


def enroll(
    session: Session,
    actor: Actor,
    hsm: Hsm,
    ca: CaAdapter,
    *,
    username: str,
    key_algorithm: KeyAlgorithm,
    scheme: SignatureScheme | None = None,
    renewing: bool = False,
) -> Credential:
    """Key in the HSM → CSR signed there → the provider's CA → chain stored.

    Refused for a unit in USB-token mode, and while the user already has an active credential of
    this provider (a second one is a renewal: :func:`renew`). If any step after key generation
    fails, the key is deleted again, so nothing is left half made.
    """
    user = get_user(session, username)
    check_unit_remote(user.unit)
    if not renewing:
        check_no_active_credential(session, user, ca.name)
    scheme = scheme or (SignatureScheme.ECDSA if not key_algorithm.is_rsa else SignatureScheme.RSA_PKCS1_V15)
    if not ca.accepts_key_algorithm(key_algorithm.value):
        raise InvalidInput(f"{ca.profile.display_name} does not issue for {key_algorithm.value} keys")
    credential_id = uuid.uuid4().hex
    key = hsm.generate_key(credential_id, key_algorithm, label=f"{username}/{ca.name}")
    try:
        hsm_scheme = SignatureScheme.ECDSA if not key_algorithm.is_rsa else SignatureScheme.RSA_PKCS1_V15
        csr = build_csr(
            key.public_key_der,
            user.full_name,
            lambda digest, hash_name, _scheme: hsm.sign_digest(credential_id, digest, hash_name, hsm_scheme),
        )
        issued = ca.enroll(
            csr,
            Subject(
                common_name=user.full_name,
                uid=user.national_id,
                organization=user.unit.name,
                email=user.email,
            ),
            key_algorithm.value,
        )
        cert = asn1_x509.Certificate.load(issued.certificate_der)
        credential = Credential(
            id=credential_id,
            user=user,
            provider=ca.name,
            key_algorithm=key_algorithm.value,
            signature_scheme=scheme.value,
            status=CredentialStatus.ACTIVE,
            certificate=issued.certificate_der,
            chain=[base64.b64encode(c).decode() for c in issued.chain_der],
            serial_hex=f"{issued.serial:x}",
            subject=cert.subject.human_friendly,
            not_before=cert.not_valid_before,
            not_after=cert.not_valid_after,
        )
        session.add(credential)
        session.flush()
        audit.record(
            session,
            actor,
            "credential.enroll",
            target_type="credential",
            target_id=credential_id,
            details={"user": username, "provider": ca.name, "key": key_algorithm.value, "serial": credential.serial_hex},
        )
    except BaseException:
        try:
            hsm.delete_key(credential_id)
        except HsmError:
            pass
        raise
    return credential


def get_credential(session: Session, credential_id: str) -> Credential:
    credential = session.get(Credential, credential_id)
    if credential is None:
        raise NotFound(f"no credential {credential_id!r}")
    return credential


def list_credentials(session: Session, username: str | None = None) -> list[Credential]:
    query = select(Credential).order_by(Credential.created_at)
    if username:
        query = query.where(Credential.user_id == get_user(session, username).id)
    return list(session.scalars(query))


def default_credential(session: Session, user: User) -> Credential:
    """The user's newest active credential whose key is in kyso's HSM (a delegated one signs only
    through its provider's app, which the CLI cannot drive)."""
    active = [c for c in user.credentials if c.status is CredentialStatus.ACTIVE and not c.delegated]
    if not active:
        raise NotFound(f"user {user.username!r} has no active credential in kyso's HSM")
    return max(active, key=lambda c: _aware(c.created_at))


def revoke(
    session: Session, actor: Actor, ca: CaAdapter, credential_id: str, reason: RevocationReason
) -> Credential:
    credential = get_credential(session, credential_id)
    if credential.status is CredentialStatus.REVOKED:
        raise CredentialNotUsable(f"credential {credential_id!r} is already revoked")
    ca.revoke(int(credential.serial_hex, 16), reason)
    credential.status = CredentialStatus.REVOKED
    credential.revoked_at = datetime.now(timezone.utc)
    audit.record(
        session,
        actor,
        "credential.revoke",
        target_type="credential",
        target_id=credential_id,
        details={"reason": reason.value, "provider": credential.provider, "serial": credential.serial_hex},
    )
    return credential


def renew(session: Session, actor: Actor, hsm: Hsm, ca: CaAdapter, credential_id: str) -> Credential:
    """A new key and certificate for the same user, provider and key type; the old one revoked as superseded.

    Renewal makes a new key rather than re-certifying the old one, so an old key's exposure
    never outlives its certificate.
    """
    old = get_credential(session, credential_id)
    if old.provider != ca.name:
        raise InvalidInput(f"credential {credential_id!r} belongs to {old.provider}, not {ca.name}")
    if old.status is not CredentialStatus.ACTIVE:
        raise CredentialNotUsable(f"credential {credential_id!r} is {old.status.value}; enroll a new one instead")
    if old.delegated:
        raise InvalidInput(f"credential {credential_id!r} is delegated: {ca.profile.display_name} renews it; link the new one")
    new = enroll(session, actor, hsm, ca, username=old.user.username,
                 key_algorithm=parse_key_algorithm(old.key_algorithm), scheme=SignatureScheme(old.signature_scheme),
                 renewing=True)
    revoke(session, actor, ca, credential_id, RevocationReason.SUPERSEDED)
    audit.record(session, actor, "credential.renew", target_type="credential", target_id=new.id,
                 details={"replaces": credential_id, "provider": ca.name})
    return new


def expiring(session: Session, within: timedelta, at: datetime | None = None) -> list[Credential]:
    """Active credentials whose certificate ends within ``within`` (already expired ones included)."""
    limit = (at or datetime.now(timezone.utc)) + within
    rows = session.scalars(select(Credential).where(Credential.status == CredentialStatus.ACTIVE)
                           .order_by(Credential.not_after))
    return [c for c in rows if _aware(c.not_after) <= limit]


def certificate_chain(credential: Credential) -> tuple[asn1_x509.Certificate, list[asn1_x509.Certificate]]:
    """The signer's certificate and the chain above it (intermediates, then the root)."""
    cert = asn1_x509.Certificate.load(credential.certificate)
    chain = [asn1_x509.Certificate.load(base64.b64decode(c)) for c in credential.chain]
    return cert, chain


def batch_limit(credential: Credential, settings_max: int) -> int:
    """How many hashes one confirmation of this credential may cover: kyso's setting, or less
    where a delegated credential's provider signs fewer per transaction (Nacencomm: one)."""
    if credential.delegated:
        provider_max = CLIENTS[credential.provider].max_digests
        if provider_max is not None:
            return min(settings_max, provider_max)
    return settings_max


class CredentialExists(Conflict):
    """The user already has an active key of this provider in kyso's HSM: renew it instead. (A
    delegated credential, whose key is at the provider, is linked, not enrolled.)"""

    code = "credential_exists"


def check_unit_remote(unit: Unit) -> None:
    """The treasury's rule: a unit signs remotely or with USB tokens, never both."""
    if unit.signing_mode is not SigningMode.REMOTE:
        raise UnitInUsbTokenMode(
            f"unit {unit.code!r} signs with USB tokens; remote signing is off until an administrator "
            "switches it back (kyso unit set-mode CODE remote)"
        )


def check_no_active_credential(session: Session, user: User, provider: str) -> None:
    existing = session.scalar(select(Credential.id).where(
        Credential.user_id == user.id, Credential.provider == provider, Credential.status == CredentialStatus.ACTIVE,
        Credential.mode == CredentialMode.HOSTED))
    if existing is not None:
        raise CredentialExists(f"user {user.username!r} already has an active {provider} credential {existing!r}; "
                               f"renew it (kyso cert renew {existing}) or revoke it first")


def check_signing_allowed(credential: Credential, at: datetime | None = None) -> None:
    """What every signature checks, on every path, right before the key is used: the credential
    is active and valid now, its signer is not disabled, and the signer's unit signs remotely."""
    check_usable(credential, at)
    check_user_enabled(credential.user)
    check_unit_remote(credential.user.unit)


def check_usable(credential: Credential, at: datetime | None = None) -> None:
    """Refuse a revoked, expired or not yet valid credential before anything is signed."""
    now = at or datetime.now(timezone.utc)
    if credential.status is not CredentialStatus.ACTIVE:
        raise CredentialNotUsable(f"credential {credential.id!r} is {credential.status.value}")
    if now < _aware(credential.not_before) or now > _aware(credential.not_after):
        raise CredentialNotUsable(f"the certificate of credential {credential.id!r} is not valid now")


def check_not_revoked(credential: Credential, ca: CaAdapter) -> None:
    """Ask the provider: a certificate revoked at the CA (not only through kyso) signs nothing."""
    try:
        status = ca.status(int(credential.serial_hex, 16))
    except CertificateUnknown as exc:
        raise CredentialNotUsable(f"{ca.profile.display_name} does not know the certificate of {credential.id!r}") from exc
    if status.revoked:
        raise CertificateRevoked(f"the certificate of credential {credential.id!r} was revoked by "
                                 f"{ca.profile.display_name} ({status.reason})")


def signing_material(credential: Credential) -> SigningMaterial:
    return _signing_material(credential.certificate, tuple(credential.chain), credential.signature_scheme)


@lru_cache(maxsize=256)
def _signing_material(certificate_der: bytes, chain_b64: tuple[str, ...], scheme: str) -> SigningMaterial:
    """Parsed once per certificate: parsing (and the self-signed test) cost milliseconds per signature."""
    cert = asn1_x509.Certificate.load(certificate_der)
    chain = [asn1_x509.Certificate.load(base64.b64decode(c)) for c in chain_b64]
    return SigningMaterial(cert, [c for c in chain if c.self_signed == "no"], SignatureScheme(scheme))


def key_signer(hsm: Hsm, credential: Credential) -> HsmKeySigner:
    """A signer over the credential's HSM key, carrying its certificate and intermediates."""
    if credential.delegated:
        raise CredentialNotUsable(f"credential {credential.id!r} is delegated: its key is at {credential.provider}")
    check_signing_allowed(credential)
    material = signing_material(credential)
    return HsmKeySigner(hsm, credential.id, material.certificate, material.intermediates, material.scheme)
