"""Errors of the signature formats; each has a stable ``code``."""

from __future__ import annotations


class SignerError(Exception):
    code = "signer_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidHash(SignerError):
    """A digest of the wrong length for its algorithm, or not a digest at all."""

    code = "invalid_hash"


class UnsupportedAlgorithm(SignerError):
    code = "unsupported_algorithm"


class InvalidParameters(SignerError):
    """Signature parameters the key cannot honour (e.g. a PSS salt too long for the key)."""

    code = "invalid_parameters"


class InvalidDocument(SignerError):
    """Not a PDF, an encrypted PDF, a damaged one, or a field that cannot be signed."""

    code = "invalid_document"
    status = 422


class InvalidStamp(SignerError):
    """A visible-stamp template other than text with ``%(signer)s`` and ``%(ts)s``, or too long."""

    code = "invalid_stamp"


class InvalidFieldPlace(SignerError):
    """Where a visible signature would go is missing, malformed or off the page."""

    code = "invalid_field_place"


class CertificateRevoked(SignerError):
    """A certificate of the signer's chain is revoked: by its provider, or as the validation data
    gathered while signing says. Nothing is signed with it (403)."""

    code = "certificate_revoked"
    status = 403


class InvalidXml(InvalidDocument):
    """An XML document that is not well-formed or not safe to parse; subclasses name the reason."""

    code = "invalid_xml"
