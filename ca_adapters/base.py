"""The one interface every certificate provider's adapter implements."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ca_adapters.remote_signing import RemoteSigningClient


class CaError(Exception):
    code = "ca_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownProvider(CaError):
    code = "unknown_provider"


class EnrollmentRefused(CaError):
    """The CA refused the request: bad CSR, key type outside its profile, bad subject."""

    code = "enrollment_refused"


class CertificateUnknown(CaError):
    code = "certificate_unknown"
    status = 404


@dataclass(frozen=True)
class NameAttribute:
    """One attribute of a distinguished name, e.g. ``("O", "Viettel Group")``."""

    kind: str
    value: str


@dataclass(frozen=True)
class CertificateProfile:
    """What a provider puts in its end-entity certificates."""

    provider: str
    display_name: str
    issuer: tuple[NameAttribute, ...]
    subject_uid_prefix: str
    """``UID=`` prefix of the subject: ``CCCD:``, ``CMND:`` or ``MST:``."""
    key_algorithms: tuple[str, ...]
    """Key types the real provider issues for (``rsa-2048``)."""
    test_key_algorithms: tuple[str, ...]
    """Accepted by the emulator only, for tests: the providers' real profiles are RSA-2048."""
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    policy_oids: tuple[str, ...] = ()
    validity_days: int = 365 * 3
    notes: str = ""

    def allows(self, key_algorithm: str, *, test_mode: bool) -> bool:
        return key_algorithm in self.key_algorithms or (test_mode and key_algorithm in self.test_key_algorithms)


@dataclass(frozen=True)
class Subject:
    """Who a certificate is for; the CA builds the subject DN from this, not from the CSR."""

    common_name: str
    uid: str
    """Citizen id or tax code, without the provider's prefix."""
    organization: str | None = None
    locality: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_der: bytes
    chain_der: tuple[bytes, ...]
    """Intermediates, then the root."""
    serial: int


class RevocationReason(str, enum.Enum):
    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"


@dataclass(frozen=True)
class CertificateStatus:
    serial: int
    revoked: bool
    revoked_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Endpoints:
    ocsp_url: str | None = None
    crl_url: str | None = None
    tsa_url: str | None = None
    signing_api_url: str | None = None
    callback_url: str | None = None
    """Where the provider calls kyso back, as registered with the provider (none: kyso polls only)."""
    extra: dict[str, str] = field(default_factory=dict)


class CaAdapter(ABC):
    """A certificate provider: enrollment, revocation, status, and its service endpoints."""

    profile: CertificateProfile
    test_mode: bool = False
    """Accept the profile's test-only key types too (emulators, sandboxes)."""

    @property
    def name(self) -> str:
        return self.profile.provider

    def accepts_key_algorithm(self, key_algorithm: str) -> bool:
        return self.profile.allows(key_algorithm, test_mode=self.test_mode)

    @abstractmethod
    def enroll(self, csr_der: bytes, subject: Subject, key_algorithm: str) -> IssuedCertificate:
        """Issue a certificate for the key that signed ``csr_der``."""

    @abstractmethod
    def revoke(self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED) -> CertificateStatus:
        """Revoke a certificate this CA issued."""

    @abstractmethod
    def status(self, serial: int) -> CertificateStatus:
        """Revocation status of a certificate this CA issued."""

    @abstractmethod
    def trust_anchors(self) -> list[bytes]:
        """DER roots that validate this provider's chains."""

    def endpoints(self) -> Endpoints:
        """OCSP, CRL, TSA and remote-signing endpoints."""
        return Endpoints()

    def remote_signing(self) -> RemoteSigningClient:
        """A client of the provider's own remote-signing API (delegated mode)."""
        raise CaError(f"{self.profile.display_name} offers no remote-signing API here")
