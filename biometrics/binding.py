"""The binding: what a signer's approval covers, and the verification code shown on both screens.

``binding = SHA-256(RFC 8785 JSON of {v, request_id, credential_id, relying_system, documents
[{hash (hex), hash_algorithm, title, summary}] in order, expires_at, nonce})``. The phone signs
``"kyso-approve-v1" ‖ binding ‖ decision ‖ counter``; WebAuthn uses the binding as its challenge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import rfc8785

BINDING_VERSION = "kyso-binding-v1"


@dataclass(frozen=True)
class BoundDocument:
    digest: bytes
    title: str
    summary: str


@dataclass(frozen=True)
class BindingInput:
    request_id: str
    credential_id: str
    relying_system: str
    hash_algorithm: str
    documents: Sequence[BoundDocument]
    expires_at: datetime
    nonce: str


def canonical_json(value: BindingInput) -> bytes:
    expires = value.expires_at if value.expires_at.tzinfo else value.expires_at.replace(tzinfo=timezone.utc)
    return rfc8785.dumps(
        {
            "v": BINDING_VERSION,
            "request_id": value.request_id,
            "credential_id": value.credential_id,
            "relying_system": value.relying_system,
            "documents": [
                {"hash": d.digest.hex(), "hash_algorithm": value.hash_algorithm, "title": d.title, "summary": d.summary}
                for d in value.documents
            ],
            "expires_at": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "nonce": value.nonce,
        }
    )


def compute_binding(value: BindingInput) -> bytes:
    return hashlib.sha256(canonical_json(value)).digest()


def verification_code(binding: bytes) -> str:
    """The first 4 bytes of the binding as a big-endian integer, mod 10000, zero-padded."""
    return f"{int.from_bytes(binding[:4], 'big') % 10000:04d}"
