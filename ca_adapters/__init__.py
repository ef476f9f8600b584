"""Certificate providers: one :class:`CaAdapter` interface, one module per provider."""

from ca_adapters.base import (
    CaAdapter,
    CaError,
    CertificateProfile,
    CertificateStatus,
    CertificateUnknown,
    EnrollmentRefused,
    IssuedCertificate,
    RevocationReason,
    Subject,
    UnknownProvider,
)
from ca_adapters.registry import get_adapter, provider_names

__all__ = [
    "CaAdapter",
    "CaError",
    "CertificateProfile",
    "CertificateStatus",
    "CertificateUnknown",
    "EnrollmentRefused",
    "IssuedCertificate",
    "RevocationReason",
    "Subject",
    "UnknownProvider",
    "get_adapter",
    "provider_names",
]
