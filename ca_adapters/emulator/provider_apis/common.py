"""What the four emulated signing APIs share: encodings, the credential check, the certificate's standing."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca_adapters.emulator.state import EmulatorState


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[no-any-return]


def matches(a: Any, b: str) -> bool:
    """A presented secret against the expected one, in constant time."""
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def is_usable(state: EmulatorState, cert: x509.Certificate) -> bool:
    status = state.ca.issued().get(cert.serial_number)
    return status is not None and not status.revoked


def decode_digest(raw: str, *, hex_encoded: bool = False) -> bytes | None:
    """A SHA-256 digest from base64 (or hex); None when it is not 32 bytes."""
    try:
        value = bytes.fromhex(raw) if hex_encoded else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        return None
    return value if len(value) == 32 else None
