"""The binding: what a signer's approval covers, and the verification code shown on both screens.

``binding = SHA-256(RFC 8785 JSON of {v, request_id, credential_id, relying_system, documents,
expires_at, nonce})`` where ``v`` is ``"kyso-binding-v1"``, ``expires_at`` is UTC as
``YYYY-MM-DDTHH:MM:SSZ`` and ``documents`` lists, in position order, one object per hash::

    {"hash": hex, "hash_algorithm": "sha256", "title": str, "summary": str, "options": {...}}

``options`` holds what changes the meaning of the signature beyond its hash, as the signer is shown
it; the key is left out when there are none (raw hashes, CAdES), so such bindings are those of
before options existed. PAdES options:

- ``field_name`` (string): the signature field, always present;
- ``certify`` (boolean): a certification signature (DocMDP: later changes limited to filling
  forms and signing), always present;
- ``reason``, ``location`` (string): written in the signature; left out when not given;
- ``stamp_text`` (string, may hold newlines): the visible stamp, ``%(signer)s`` and ``%(ts)s``
  filled in when signing; left out when not given (then the stamp is the signer's name and date).

XAdES options (an XML signature inside the document):

- ``reference_id`` (string): the Id of the element signed (``URI="#id"``);
- ``placement`` (string): the element the signature is placed in (``/Hoso/CKy_Dvi``, ``//Cky``).

Every field comes in the approval device's pending list (``GET /v1/devices/me/requests``), so a
device recomputes the binding from what it displays and refuses a mismatch. The phone signs
``"kyso-approve-v1" ‖ binding ‖ decision ‖ counter``; WebAuthn uses the binding as its challenge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import rfc8785

BINDING_VERSION = "kyso-binding-v1"

OptionValue = str | bool


@dataclass(frozen=True)
class BoundDocument:
    digest: bytes
    title: str
    summary: str
    options: Mapping[str, OptionValue] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingInput:
    request_id: str
    credential_id: str
    relying_system: str
    hash_algorithm: str
    documents: Sequence[BoundDocument]
    expires_at: datetime
    nonce: str


def _document(d: BoundDocument, hash_algorithm: str) -> dict[str, object]:
    bound: dict[str, object] = {"hash": d.digest.hex(), "hash_algorithm": hash_algorithm, "title": d.title,
                                "summary": d.summary}
    if d.options:
        bound["options"] = dict(d.options)
    return bound


def canonical_json(value: BindingInput) -> bytes:
    expires = value.expires_at if value.expires_at.tzinfo else value.expires_at.replace(tzinfo=timezone.utc)
    return jcs_of_text({
        "v": BINDING_VERSION,
        "request_id": value.request_id,
        "credential_id": value.credential_id,
        "relying_system": value.relying_system,
        "documents": [_document(d, value.hash_algorithm) for d in value.documents],
        "expires_at": expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nonce": value.nonce,
    })


def jcs_of_text(value: dict[str, object]) -> bytes:
    """RFC 8785 of a value made only of objects, arrays, strings and booleans (a binding).

    For such values the standard library's JSON writer, keys sorted, no spaces, non-ASCII kept, writes
    exactly RFC 8785: the same string escapes, and keys in the same order while no key holds a character
    above U+FFFF (UTF-16 code units and code points then sort alike). Anything else, and a lone surrogate,
    goes to the full implementation.
    """
    if not _text_only(value):
        return bytes(rfc8785.dumps(value))
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return bytes(rfc8785.dumps(value))  # its own error for text that is no Unicode


def _text_only(value: object) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or kind is bool:
            continue
        if kind is list:
            pending.extend(item)  # type: ignore[arg-type]
        elif kind is dict:
            keys = item.keys()  # type: ignore[attr-defined]
            if not all(type(key) is str and (key.isascii() or max(key) <= "\uffff") for key in keys):
                return False
            pending.extend(item.values())  # type: ignore[attr-defined]
        else:
            return False
    return True


def compute_binding(value: BindingInput) -> bytes:
    return hashlib.sha256(canonical_json(value)).digest()


def verification_code(binding: bytes) -> str:
    """The first 4 bytes of the binding as a big-endian integer, mod 10000, zero-padded."""
    return f"{int.from_bytes(binding[:4], 'big') % 10000:04d}"
