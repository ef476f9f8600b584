"""Signature formats as pure functions over a :class:`KeySigner`.

``raw`` signs digests, ``cades`` builds CAdES B-B, ``pades`` signs PDFs through pyHanko and
``validate`` checks both against given trust anchors; ``xades`` signs inside XML documents
(parsed by ``xml_safety``).
"""

from signer.algorithms import PssParams, SignatureScheme
from signer.errors import InvalidDocument, InvalidHash, InvalidParameters, InvalidXml, SignerError, UnsupportedAlgorithm
from signer.keysigner import KeySigner

__all__ = [
    "InvalidDocument",
    "InvalidHash",
    "InvalidParameters",
    "InvalidXml",
    "KeySigner",
    "PssParams",
    "SignatureScheme",
    "SignerError",
    "UnsupportedAlgorithm",
]
