"""HTTP status for each domain error class (the API renders them; one table, one place)."""

from __future__ import annotations

from biometrics import ConfirmationError
from broker.errors import Conflict, InvalidInput, KysoError, NotFound, NotInitialised, PolicyViolation
from ca_adapters import CaError, UnknownProvider
from ca_adapters.base import CertificateUnknown, EnrollmentRefused
from hsm import DeviceError, HsmError, TokenMissing, WrongPin
from signer import SignerError

DomainError = (KysoError, HsmError, SignerError, CaError, ConfirmationError)


def status_for(exc: Exception) -> int:
    if isinstance(exc, NotFound | CertificateUnknown):
        return 404
    if isinstance(exc, InvalidInput | SignerError | UnknownProvider | EnrollmentRefused):
        return 400 if not isinstance(exc, SignerError) or exc.code != "invalid_document" else 422
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, PolicyViolation | ConfirmationError):
        return 403
    if isinstance(exc, TokenMissing | WrongPin | DeviceError | NotInitialised):
        return 503
    if isinstance(exc, KysoError) and exc.code in ("not_signed_in", "invalid_token", "invalid_client"):
        return 401
    if isinstance(exc, KysoError) and exc.code == "insufficient_scope":
        return 403
    if isinstance(exc, KysoError) and exc.code == "document_too_large":
        return 413
    if isinstance(exc, KysoError) and exc.code in ("device_not_active", "activation_refused"):
        return 403
    if isinstance(exc, KysoError) and exc.code in ("request_expired", "document_gone"):
        return 410
    if isinstance(exc, KysoError) and hasattr(exc, "retry_after"):
        return 429
    if isinstance(exc, KysoError | CaError) and exc.code in ("provider_unavailable", "provider_api_error"):
        return 502
    return 400 if isinstance(exc, HsmError | CaError | KysoError) else 500
