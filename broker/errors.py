"""Errors of the broker's services: a small hierarchy with stable codes."""

from __future__ import annotations


class KysoError(Exception):
    """Root of service errors. ``code`` is stable; ``message`` is safe to show."""

    code = "kyso_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(KysoError):
    code = "not_found"


class InvalidInput(KysoError):
    code = "invalid_input"


class InvalidText(InvalidInput):
    """Text a signer is shown holds a character that could make it display as something else."""

    code = "invalid_text"


class Conflict(KysoError):
    code = "conflict"


class PolicyViolation(KysoError):
    code = "policy_violation"


class UnitInUsbTokenMode(PolicyViolation):
    code = "unit_in_usb_token_mode"


class CredentialNotUsable(PolicyViolation):
    """Revoked, expired or not yet valid."""

    code = "credential_not_usable"


class CertificateRevoked(CredentialNotUsable):
    """The provider revoked the certificate (perhaps without kyso knowing until now)."""

    code = "certificate_revoked"


class NotInitialised(KysoError):
    code = "not_initialised"
