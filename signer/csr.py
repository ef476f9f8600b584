"""A PKCS#10 certification request signed by a key that never leaves its home."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from asn1crypto import csr, keys, x509

from signer.algorithms import SignatureScheme, signature_algorithm

DigestSigner = Callable[[bytes, str, SignatureScheme], bytes]
"""``(digest, hash_name, scheme) -> signature`` (ECDSA as DER)."""


def build_csr(public_key_der: bytes, common_name: str, sign: DigestSigner, hash_name: str = "sha256") -> bytes:
    """DER CSR for ``public_key_der`` (SubjectPublicKeyInfo); the CA sets the real subject."""
    spki = keys.PublicKeyInfo.load(public_key_der)
    scheme = SignatureScheme.ECDSA if spki.algorithm == "ec" else SignatureScheme.RSA_PKCS1_V15
    info = csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": x509.Name.build({"common_name": common_name}),
            "subject_pk_info": spki,
            "attributes": [],
        }
    )
    digest = hashlib.new(hash_name, info.dump()).digest()
    signature = sign(digest, hash_name, scheme)
    request = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": signature_algorithm(scheme, hash_name),
            "signature": signature,
        }
    )
    return bytes(request.dump())
