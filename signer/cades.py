"""CAdES baseline signatures (ETSI EN 319 122-1), detached or enveloping, B-B to B-LT.

Built in two pure phases so that a confirmation can sit between them:
``prepare`` returns the DER signed attributes and their digest (what the signer approves and
the key signs); ``finish`` wraps a signature value into a ``ContentInfo`` at a level. The parts that
depend only on the signer (certificates, signing-certificate-v2, identifiers) are encoded once
with asn1crypto and cached; each signature only concatenates DER.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from asn1crypto import algos, cms, tsp, x509

from signer import aio, der, ltv
from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme, check_digest, signature_algorithm
from signer.errors import InvalidParameters
from signer.keysigner import KeySigner


@dataclass(frozen=True)
class CadesToBeSigned:
    """The signed attributes, their DER, and the digest the key must sign."""

    signed_attrs_der: bytes
    dtbs_digest: bytes
    hash_name: str
    content: bytes | None
    """The content to embed (enveloping), or None (detached)."""


_OID_DATA = bytes.fromhex("06092a864886f70d010701")
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_CONTENT_TYPE_ATTR = cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()
_OID_MESSAGE_DIGEST = bytes.fromhex("06092a864886f70d010904")
_OID_SIGNING_TIME = bytes.fromhex("06092a864886f70d010905")


@dataclass(frozen=True)
class _SignerProfile:
    """DER of the parts that depend only on the certificate and chain: encoded once."""

    sid: bytes
    signing_certificate_v2: bytes
    certificates: bytes
    """Content octets of the ``certificates [0] IMPLICIT CertificateSet``."""


@lru_cache(maxsize=256)
def _profile(cert_der: bytes, chain_der: tuple[bytes, ...]) -> _SignerProfile:
    cert = x509.Certificate.load(cert_der)
    issuer_serial = cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})
    ess_cert_id = tsp.ESSCertIDv2(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": hashlib.sha256(cert_der).digest(),
            "issuer_serial": {
                "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                "serial_number": cert.serial_number,
            },
        }
    )
    attr = cms.CMSAttribute(
        {"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({"certs": [ess_cert_id]})]}
    )
    return _SignerProfile(
        sid=issuer_serial.dump(),
        signing_certificate_v2=attr.dump(),
        certificates=cert_der + b"".join(chain_der),
    )


def _profile_for(certificate: x509.Certificate, chain: Sequence[x509.Certificate]) -> _SignerProfile:
    return _profile(certificate.dump(), tuple(c.dump() for c in chain))


@lru_cache(maxsize=64)
def _digest_algorithm(hash_name: str) -> bytes:
    return algos.DigestAlgorithm({"algorithm": hash_name}).dump()


@lru_cache(maxsize=64)
def _signature_algorithm(scheme: SignatureScheme, hash_name: str, pss: PssParams | None) -> bytes:
    return signature_algorithm(scheme, hash_name, pss).dump()


def prepare(
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    content: bytes | None = None,
    content_digest: bytes | None = None,
    detached: bool = True,
    hash_name: str = "sha256",
    signing_time: datetime | None = None,
) -> CadesToBeSigned:
    """Signed attributes over ``content`` (or its precomputed digest, detached only)."""
    if (content is None) == (content_digest is None):
        raise InvalidParameters("give either the content or its digest")
    if hash_name not in DIGEST_SIZES:
        raise InvalidParameters(f"unsupported digest algorithm {hash_name!r}")
    if content_digest is None:
        assert content is not None
        content_digest = hashlib.new(hash_name, content).digest()
    else:
        if not detached:
            raise InvalidParameters("an enveloping signature needs the content itself")
        check_digest(content_digest, hash_name)
    when = (signing_time or datetime.now(timezone.utc)).astimezone(timezone.utc)
    profile = _profile_for(certificate, chain)
    signing_time_attr = der.sequence(
        _OID_SIGNING_TIME, der.set_of(der.tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode()))
    )
    digest_attr = _message_digest_attr(content_digest)
    # DER orders a SET OF by encoding; verifiers such as OpenSSL re-encode before checking.
    signed_attrs_der = der.set_of(_CONTENT_TYPE_ATTR, signing_time_attr, digest_attr, profile.signing_certificate_v2)
    return CadesToBeSigned(
        signed_attrs_der=signed_attrs_der,
        dtbs_digest=hashlib.new(hash_name, signed_attrs_der).digest(),
        hash_name=hash_name,
        content=None if detached else content,
    )


def pades_signed_attributes(
    certificate: x509.Certificate, chain: Sequence[x509.Certificate], document_digest: bytes, hash_name: str
) -> bytes:
    """The DER signed attributes of a PAdES baseline signature over ``document_digest``: content
    type, message digest and signing certificate v2; no signing time (ETSI EN 319 142-1, 5.2.1:
    the time is the dictionary's /M). What pyHanko's CAdES attribute provider makes (the
    certificate hashed with SHA-256 in signing-certificate-v2), without re-encoding the
    certificate's parts at every signature."""
    check_digest(document_digest, hash_name)
    return der.set_of(_CONTENT_TYPE_ATTR, _message_digest_attr(document_digest),
                      _profile_for(certificate, chain).signing_certificate_v2)


def _message_digest_attr(digest: bytes) -> bytes:
    return der.sequence(_OID_MESSAGE_DIGEST, der.set_of(der.octet_string(digest)))


def _signed_data(
    tbs: CadesToBeSigned,
    signature: bytes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    scheme: SignatureScheme,
    pss: PssParams | None = None,
    unsigned_attrs_der: bytes | None = None,
) -> bytes:
    """The DER ``ContentInfo`` of a SignedData carrying one signature.

    ``unsigned_attrs_der`` is a DER ``SET OF Attribute`` (e.g. a signature timestamp).
    """
    profile = _profile_for(certificate, chain)
    digest_algorithm = _digest_algorithm(tbs.hash_name)
    signer_info = der.sequence(
        der.small_integer(1),
        profile.sid,
        digest_algorithm,
        der.context(0, der.strip_tag(tbs.signed_attrs_der)),
        _signature_algorithm(scheme, tbs.hash_name, pss),
        der.octet_string(signature),
        der.context(1, der.strip_tag(unsigned_attrs_der)) if unsigned_attrs_der else b"",
    )
    encap = der.sequence(
        _OID_DATA, der.context(0, der.octet_string(tbs.content)) if tbs.content is not None else b""
    )
    signed_data = der.sequence(
        der.small_integer(1),
        der.set_of(digest_algorithm),
        encap,
        der.context(0, profile.certificates),
        der.set_of(signer_info),
    )
    return der.sequence(_OID_SIGNED_DATA, der.context(0, signed_data))


async def async_finish(
    tbs: CadesToBeSigned,
    signature: bytes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    scheme: SignatureScheme,
    pss: PssParams | None,
    level: ltv.Level,
    services: ltv.LongTermServices | None,
    *,
    accept_lower: bool = False,
) -> tuple[bytes, ltv.Level]:
    """Assemble at ``level`` (B-T adds a signature timestamp, B-LT the validation data); the level reached.

    With ``accept_lower`` a TSA or revocation outage gives the highest level reached instead of
    an error; a revoked certificate is always an error.
    """
    if level is ltv.Level.B_LTA:
        raise ltv.UnsupportedLevel("CAdES is signed up to B-LT here; archive timestamps are not built")
    if level is ltv.Level.B_B:
        return _signed_data(tbs, signature, certificate, chain, scheme, pss), ltv.Level.B_B
    try:
        if services is None:
            raise ltv.TimestampUnavailable("no TSA is configured")
        token = await ltv.timestamp_token(signature, services)
    except ltv.TimestampUnavailable:
        if not accept_lower:
            raise
        return _signed_data(tbs, signature, certificate, chain, scheme, pss), ltv.Level.B_B
    data = _signed_data(tbs, signature, certificate, chain, scheme, pss, ltv.signature_timestamp_attrs(token))
    if not level.long_term:
        return data, ltv.Level.B_T
    try:
        validation_data = await ltv.collect_validation_data(certificate, chain, services, token)
    except ltv.RevocationUnavailable:
        if not accept_lower:
            raise
        return data, ltv.Level.B_T
    return ltv.add_validation_data(data, validation_data), ltv.Level.B_LT


def finish(tbs: CadesToBeSigned, signature: bytes, certificate: x509.Certificate, chain: Sequence[x509.Certificate],
             scheme: SignatureScheme, pss: PssParams | None, level: ltv.Level, services: ltv.LongTermServices | None,
             *, accept_lower: bool = False) -> tuple[bytes, ltv.Level]:
    if level is ltv.Level.B_B:  # nothing to wait for: no event loop turn per document
        return _signed_data(tbs, signature, certificate, chain, scheme, pss), ltv.Level.B_B
    return aio.run(async_finish(tbs, signature, certificate, chain, scheme, pss, level, services,
                                accept_lower=accept_lower))


def default_pss(scheme: SignatureScheme, hash_name: str) -> PssParams | None:
    """The PSS parameters kyso uses for a PSS key: MGF1 with the same digest, salt = digest size."""
    return PssParams(hash_name, DIGEST_SIZES[hash_name]) if scheme is SignatureScheme.RSA_PSS else None


def sign(
    key: KeySigner,
    *,
    content: bytes | None = None,
    content_digest: bytes | None = None,
    detached: bool = True,
    hash_name: str = "sha256",
    signing_time: datetime | None = None,
    level: ltv.Level = ltv.Level.B_B,
    services: ltv.LongTermServices | None = None,
) -> bytes:
    """Prepare, sign in the key's home and finish at ``level``: a CAdES signature, DER."""
    tbs = prepare(
        key.certificate,
        key.chain,
        content=content,
        content_digest=content_digest,
        detached=detached,
        hash_name=hash_name,
        signing_time=signing_time,
    )
    pss = default_pss(key.scheme, hash_name)
    signature = key.sign(tbs.dtbs_digest, hash_name, pss=pss)
    return finish(tbs, signature, key.certificate, key.chain, key.scheme, pss, level, services)[0]
