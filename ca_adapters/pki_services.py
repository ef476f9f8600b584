"""What a provider's emulator answers for its PKI: OCSP (RFC 6960), CRLs (RFC 5280), RFC 3161 timestamps.

Pure functions of an :class:`IssuingCa` and the request bytes; the emulator's HTTP layer only
routes. OCSP and CRLs are answered from the CA's record of issued serials (the CAs issue at run time, which a fixed test-PKI configuration cannot serve);
the issuing CA signs its OCSP responses itself, so no responder certificate is needed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

from ca_adapters.base import CaError
from ca_adapters.testpki import IssuingCa

_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
}
VALIDITY = timedelta(days=1)


class MalformedPkiRequest(CaError):
    code = "malformed_request"


def ocsp_response(ca: IssuingCa, request_der: bytes) -> bytes:
    """A signed OCSP response for the one certificate asked about (unauthorized if not ours)."""
    try:
        request = ocsp.load_der_ocsp_request(request_der)
    except ValueError:
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
            serialization.Encoding.DER)
    ca_cert = ca.certificate()
    if (request.issuer_name_hash, request.issuer_key_hash) != _issuer_hashes(ca_cert, request.hash_algorithm.name):
        return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
            serialization.Encoding.DER)
    now = datetime.now(UTC)
    status = ca.issued().get(request.serial_number)
    builder = ocsp.OCSPResponseBuilder()
    if status is None:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
    elif status.revoked:
        cert_status, revoked_at = ocsp.OCSPCertStatus.REVOKED, status.revoked_at
        reason = _REASONS.get(status.reason or "", x509.ReasonFlags.unspecified)
    else:
        cert_status, revoked_at, reason = ocsp.OCSPCertStatus.GOOD, None, None
    builder = builder.add_response_by_hash(
        request.issuer_name_hash, request.issuer_key_hash, request.serial_number, request.hash_algorithm,
        cert_status, now, now + VALIDITY, revoked_at, reason,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert).certificates([ca_cert])
    for extension in request.extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    return builder.sign(ca.key(), hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _issuer_hashes(ca_cert: x509.Certificate, hash_name: str) -> tuple[bytes, bytes]:
    """CertID's issuerNameHash and issuerKeyHash (over the subjectPublicKey bits) of this CA."""
    spki = asn1_keys.PublicKeyInfo.load(ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    key_bits = spki["public_key"].contents[1:]  # drop the BIT STRING's unused-bits octet
    return (hashlib.new(hash_name, ca_cert.subject.public_bytes()).digest(), hashlib.new(hash_name, key_bits).digest())


def _crl(issuer: x509.Certificate, key: rsa.RSAPrivateKey, revoked: list[x509.RevokedCertificate]) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + VALIDITY)
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def crl(ca: IssuingCa) -> bytes:
    """The issuing CA's current CRL, DER."""
    revoked = []
    for serial, status in ca.issued().items():
        if status.revoked and status.revoked_at is not None:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(status.revoked_at)
            reason = _REASONS.get(status.reason or "")
            if reason is not None and reason is not x509.ReasonFlags.unspecified:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            revoked.append(entry.build())
    return _crl(ca.certificate(), ca.key(), revoked)


def root_crl(ca: IssuingCa) -> bytes:
    """The test national root's CRL (it never revokes an issuing CA here), DER."""
    return _crl(ca.root(), ca.root_key(), [])


def timestamp_response(ca: IssuingCa, request_der: bytes) -> bytes:
    """An RFC 3161 ``TimeStampResp`` from the provider's TSA, its certificate embedded."""
    try:
        request = tsp.TimeStampReq.load(request_der)
        request.native  # noqa: B018 - parse fully now: a malformed request is the caller's error
    except (ValueError, TypeError) as exc:
        raise MalformedPkiRequest(f"not a TimeStampReq: {exc}") from exc
    cert, key = ca.tsa()
    tsa_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tsa_key = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    issuer = asn1_x509.Certificate.load(ca.certificate().public_bytes(serialization.Encoding.DER))
    stamper = DummyTimeStamper(tsa_cert, tsa_key, certs_to_embed=[issuer])
    return stamper.request_tsa_response(request).dump()
