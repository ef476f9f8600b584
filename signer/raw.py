"""Raw hash signing (the CSC ``signHash`` operation): digests in, signature values out."""

from __future__ import annotations

from collections.abc import Sequence

from signer.algorithms import PssParams, SignatureScheme, check_digest
from signer.errors import InvalidHash
from signer.keysigner import KeySigner


def sign_hashes(
    key: KeySigner,
    digests: Sequence[bytes],
    hash_name: str,
    *,
    scheme: SignatureScheme | None = None,
    pss: PssParams | None = None,
) -> list[bytes]:
    """Sign each digest, in order. Every digest is checked before the first is signed."""
    if not digests:
        raise InvalidHash("no hash to sign")
    for digest in digests:
        check_digest(digest, hash_name)
    return [key.sign(d, hash_name, scheme=scheme, pss=pss) for d in digests]
