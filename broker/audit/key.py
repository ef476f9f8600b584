"""The audit key: an EC P-256 key in the HSM that signs audit checkpoints, restores and exports.

Signed statements are RFC 8785 canonical JSON, so an auditor can rebuild the exact bytes in any
language; the private key never leaves the token (sensitive, not extractable).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker.errors import KysoError
from hsm import Hsm, HsmError, KeyAlgorithm, SignatureScheme

AUDIT_KEY_ID = "kyso-audit"
AUDIT_KEY_ALGORITHM = KeyAlgorithm.EC_P256
STATEMENT_VERSION = 1


class AuditKeyMissing(KysoError):
    code = "audit_key_missing"


@dataclass(frozen=True)
class AuditPublicKey:
    spki_der: bytes

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.spki_der).hexdigest()

    def pem(self) -> str:
        key = serialization.load_der_public_key(self.spki_der)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @classmethod
    def from_pem(cls, text: str) -> AuditPublicKey:
        key = serialization.load_pem_public_key(text.encode())
        return cls(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

    def verify(self, kind: str, fields: Mapping[str, Any], signature_b64: str) -> bool:
        key = serialization.load_der_public_key(self.spki_der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        try:
            key.verify(base64.b64decode(signature_b64, validate=True), statement_bytes(kind, fields),
                       ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SignedStatement:
    kind: str
    fields: dict[str, Any]
    signature: str
    """Base64 DER ECDSA-Sig-Value."""
    key_fingerprint: str

    def details(self) -> dict[str, Any]:
        """The form kept in audit events and anchor lines."""
        return {**self.fields, "signature": self.signature, "key_id": AUDIT_KEY_ID,
                "key_fingerprint": self.key_fingerprint}


def statement_bytes(kind: str, fields: Mapping[str, Any]) -> bytes:
    return bytes(rfc8785.dumps({"kind": kind, "v": STATEMENT_VERSION, **fields}))


def audit_public_key(hsm: Hsm) -> AuditPublicKey | None:
    """The audit key's public half, or None before the first checkpoint made it."""
    if not hsm.key_exists(AUDIT_KEY_ID):
        return None
    return AuditPublicKey(hsm.public_key(AUDIT_KEY_ID, AUDIT_KEY_ALGORITHM).public_key_der)


def ensure_audit_key(hsm: Hsm) -> AuditPublicKey:
    """The audit key, generated on first use. Call under the chain lock so two processes never both make one."""
    existing = audit_public_key(hsm)
    if existing is not None:
        return existing
    try:
        info = hsm.generate_key(AUDIT_KEY_ID, AUDIT_KEY_ALGORITHM, label=AUDIT_KEY_ID)
    except HsmError:
        existing = audit_public_key(hsm)
        if existing is None:
            raise
        return existing
    return AuditPublicKey(info.public_key_der)


def sign_statement(hsm: Hsm, kind: str, fields: dict[str, Any]) -> SignedStatement:
    key = ensure_audit_key(hsm)
    digest = hashlib.sha256(statement_bytes(kind, fields)).digest()
    signature = hsm.sign_digest(AUDIT_KEY_ID, digest, "sha256", SignatureScheme.ECDSA)
    return SignedStatement(kind, fields, base64.b64encode(signature).decode(), key.fingerprint)
