"""The phone protocol: a P-256 device key signs each decision over the binding."""

from __future__ import annotations

import enum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from biometrics.errors import BadProof, ReplayedCounter

APPROVAL_DOMAIN = b"kyso-approve-v1"


class Decision(str, enum.Enum):
    APPROVE = "approve"
    REFUSE = "refuse"


def approval_message(binding: bytes, decision: Decision, counter: int) -> bytes:
    """``"kyso-approve-v1" ‖ binding (32 bytes) ‖ decision (ASCII) ‖ counter (8 bytes, big-endian)``."""
    if len(binding) != 32:
        raise ValueError("a binding has 32 bytes")
    return APPROVAL_DOMAIN + binding + decision.value.encode() + counter.to_bytes(8, "big")


def load_device_key(public_key_der: bytes) -> ec.EllipticCurvePublicKey:
    """A registered device key must be P-256 (what phones keep in secure hardware)."""
    try:
        key = serialization.load_der_public_key(public_key_der)
    except ValueError as exc:
        raise BadProof("the device public key is not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise BadProof("a device key must be ECDSA P-256")
    return key


def verify_decision(
    public_key_der: bytes, binding: bytes, decision: Decision, counter: int, last_counter: int, signature: bytes
) -> None:
    """Raise unless ``signature`` is the device's over this decision and the counter moved forward."""
    if counter <= last_counter:
        raise ReplayedCounter(f"the device counter must exceed {last_counter}")
    key = load_device_key(public_key_der)
    try:
        key.verify(signature, approval_message(binding, decision, counter), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise BadProof("the device signature does not verify for this request") from exc


def sign_decision(private_key: ec.EllipticCurvePrivateKey, binding: bytes, decision: Decision, counter: int) -> bytes:
    """What the phone does after its local biometric check (used by the reference client)."""
    return private_key.sign(approval_message(binding, decision, counter), ec.ECDSA(hashes.SHA256()))
