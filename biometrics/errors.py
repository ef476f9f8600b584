"""Errors of signer confirmation; each has a stable ``code``."""

from __future__ import annotations


class ConfirmationError(Exception):
    code = "confirmation_failed"
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadProof(ConfirmationError):
    """A device signature or WebAuthn assertion that does not verify for this binding."""

    code = "confirmation_invalid"


class ReplayedCounter(ConfirmationError):
    code = "confirmation_replayed"
