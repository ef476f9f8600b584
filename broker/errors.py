"""Errors of the broker's services: a small hierarchy with stable codes.

Every error class carries its stable ``code`` (one class per code) and the HTTP ``status`` the API
answers it with; subclasses inherit both unless they say otherwise. The API renders any of them
in one handler (problem details; CSC bodies on ``/csc``)."""

from __future__ import annotations


class KysoError(Exception):
    """Root of service errors. ``code`` is stable; ``message`` is safe to show."""

    code = "kyso_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(KysoError):
    code = "not_found"
    status = 404


class InvalidInput(KysoError):
    code = "invalid_input"


class InvalidText(InvalidInput):
    """Text a signer is shown holds a character that could make it display as something else."""

    code = "invalid_text"


class Conflict(KysoError):
    code = "conflict"
    status = 409


class PolicyViolation(KysoError):
    code = "policy_violation"
    status = 403


class UnitInUsbTokenMode(PolicyViolation):
    code = "unit_in_usb_token_mode"


class CredentialNotUsable(PolicyViolation):
    """Revoked, expired or not yet valid."""

    code = "credential_not_usable"


class NotInitialised(KysoError):
    code = "not_initialised"
    status = 503


class Unauthenticated(KysoError):
    """No valid credentials for the call: a missing, unknown or expired token, a wrong client secret."""

    code = "unauthenticated"
    status = 401


class Gone(KysoError):
    """What was asked for existed and is no longer there."""

    code = "gone"
    status = 410


class DocumentGone(Gone):
    """The document's file is no longer stored: deleted after its retention period, or not restored."""

    code = "document_gone"


class TooLarge(KysoError):
    code = "too_large"
    status = 413


class Unavailable(KysoError):
    """Something kyso depends on did not answer (a provider's API): try again later."""

    code = "unavailable"
    status = 502
