"""CAdES baseline B-B signatures (ETSI EN 319 122-1), detached or enveloping.

Built with asn1crypto in two pure phases so that a confirmation can sit between them:
``prepare`` returns the DER signed attributes and their digest (what the signer approves and
the key signs); ``assemble`` wraps a signature value into a ``ContentInfo``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from asn1crypto import algos, cms, core, tsp, x509

from signer.algorithms import DIGEST_SIZES, PssParams, Scheme, check_digest, signature_algorithm
from signer.errors import InvalidParameters
from signer.keysigner import KeySigner


@dataclass(frozen=True)
class CadesToBeSigned:
    """The signed attributes, their DER, and the digest the key must sign."""

    signed_attrs_der: bytes
    digest: bytes
    hash_name: str
    content: bytes | None
    """The content to embed (enveloping), or None (detached)."""


@dataclass(frozen=True)
class _SignerProfile:
    """Parts that depend only on the certificate and chain: encoded once."""

    sid: cms.SignerIdentifier
    signing_certificate_v2: cms.CMSAttribute
    certificates: cms.CertificateSet


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
    certs = [cms.CertificateChoices(name="certificate", value=cert)]
    certs += [cms.CertificateChoices(name="certificate", value=x509.Certificate.load(d)) for d in chain_der]
    return _SignerProfile(
        sid=cms.SignerIdentifier(name="issuer_and_serial_number", value=issuer_serial),
        signing_certificate_v2=attr,
        certificates=cms.CertificateSet(certs),
    )


def _profile_for(certificate: x509.Certificate, chain: Sequence[x509.Certificate]) -> _SignerProfile:
    return _profile(certificate.dump(), tuple(c.dump() for c in chain))


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
    if content_digest is None:
        assert content is not None
        content_digest = hashlib.new(hash_name, content).digest()
    else:
        if not detached:
            raise InvalidParameters("an enveloping signature needs the content itself")
        check_digest(content_digest, hash_name)
    if hash_name not in DIGEST_SIZES:
        raise InvalidParameters(f"unsupported digest algorithm {hash_name!r}")
    when = (signing_time or datetime.now(timezone.utc)).replace(microsecond=0)
    profile = _profile_for(certificate, chain)
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time(name="utc_time", value=when)]}),
        cms.CMSAttribute({"type": "message_digest", "values": [content_digest]}),
        profile.signing_certificate_v2,
    ]
    # DER orders a SET OF by encoding; verifiers such as OpenSSL re-encode before checking.
    attrs.sort(key=lambda a: a.dump())
    signed_attrs_der = cms.CMSAttributes(attrs).dump()
    return CadesToBeSigned(
        signed_attrs_der=signed_attrs_der,
        digest=hashlib.new(hash_name, signed_attrs_der).digest(),
        hash_name=hash_name,
        content=None if detached else content,
    )


def assemble(
    tbs: CadesToBeSigned,
    signature: bytes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    scheme: Scheme,
    pss: PssParams | None = None,
    unsigned_attrs: cms.CMSAttributes | None = None,
) -> bytes:
    """The DER ``ContentInfo`` of a SignedData carrying one signature."""
    profile = _profile_for(certificate, chain)
    digest_algorithm = algos.DigestAlgorithm({"algorithm": tbs.hash_name})
    signer_info = {
        "version": "v1",
        "sid": profile.sid,
        "digest_algorithm": digest_algorithm,
        "signed_attrs": cms.CMSAttributes.load(tbs.signed_attrs_der),
        "signature_algorithm": signature_algorithm(scheme, tbs.hash_name, pss),
        "signature": signature,
    }
    if unsigned_attrs is not None and len(unsigned_attrs):
        signer_info["unsigned_attrs"] = unsigned_attrs
    encap: dict[str, object] = {"content_type": "data"}
    if tbs.content is not None:
        encap["content"] = core.OctetString(tbs.content)
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [digest_algorithm],
            "encap_content_info": encap,
            "certificates": profile.certificates,
            "signer_infos": [cms.SignerInfo(signer_info)],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())


def sign(
    key: KeySigner,
    *,
    content: bytes | None = None,
    content_digest: bytes | None = None,
    detached: bool = True,
    hash_name: str = "sha256",
    signing_time: datetime | None = None,
) -> bytes:
    """Prepare, sign in the key's home and assemble: a CAdES B-B signature, DER."""
    tbs = prepare(
        key.certificate,
        key.chain,
        content=content,
        content_digest=content_digest,
        detached=detached,
        hash_name=hash_name,
        signing_time=signing_time,
    )
    pss = PssParams(hash_name, DIGEST_SIZES[hash_name]) if key.scheme is Scheme.RSA_PSS else None
    signature = key.sign(tbs.digest, hash_name, pss=pss)
    return assemble(tbs, signature, key.certificate, key.chain, key.scheme, pss)
