"""Signer confirmation: the binding, the approval-device protocol and WebAuthn ceremonies.

Pure functions: callers keep the state (devices, counters, challenges) and pass it in.
"""

from biometrics.binding import BindingInput, BoundDocument, compute_binding, verification_code
from biometrics.device import Decision, approval_message, sign_decision, verify_decision
from biometrics.errors import BadProof, ConfirmationError, ReplayedCounter

__all__ = [
    "BadProof",
    "BindingInput",
    "BoundDocument",
    "ConfirmationError",
    "Decision",
    "ReplayedCounter",
    "approval_message",
    "compute_binding",
    "sign_decision",
    "verification_code",
    "verify_decision",
]
