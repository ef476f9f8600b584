"""The HTTP status of a domain error: what its class says (one place, read by the API's one handler)."""

from __future__ import annotations

from biometrics import ConfirmationError
from broker.errors import KysoError
from ca_adapters import CaError
from hsm import HsmError
from signer import SignerError

DomainError = (KysoError, HsmError, SignerError, CaError, ConfirmationError)


def status_for(exc: Exception) -> int:
    """Every domain error class carries its ``status`` (inherited from its root); anything else is a fault."""
    return int(getattr(exc, "status", 500)) if isinstance(exc, DomainError) else 500
