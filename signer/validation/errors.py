"""What the validation refuses: a document it cannot validate, a trust store it cannot read."""

from __future__ import annotations

from signer.errors import InvalidDocument, SignerError


class NotSigned(InvalidDocument):
    code = "not_signed"


class EncryptedDocument(InvalidDocument):
    code = "encrypted_document"


class ContentRequired(InvalidDocument):
    """A detached CMS signature given without the content it signs."""

    code = "content_required"
    status = 400  # the request lacks a part: not a document kyso cannot process


class InvalidTrustStore(SignerError):
    code = "invalid_trust_store"
