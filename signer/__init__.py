"""Signature formats as pure functions over a :class:`KeySigner`.

``raw`` signs digests, ``cades`` builds CAdES B-B, ``pades`` signs PDFs through pyHanko and
``validate`` checks both against given trust anchors.
"""

from signer.algorithms import PssParams, Scheme
from signer.errors import InvalidDocument, InvalidHash, InvalidParameters, SignerError, UnsupportedAlgorithm
from signer.keysigner import KeySigner

__all__ = [
    "InvalidDocument",
    "InvalidHash",
    "InvalidParameters",
    "KeySigner",
    "PssParams",
    "Scheme",
    "SignerError",
    "UnsupportedAlgorithm",
]
