"""The providers' own remote-signing APIs (delegated mode: the key stays at the provider).

Each provider's client speaks its API's published shape and normalises the outcome to
:class:`RemoteStatus`; kyso builds CAdES/PAdES around the raw PKCS#1 v1.5 signatures it returns,
with the chain the provider gives. Where a provider's material is silent the client's constants
say "modelled".
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509

from ca_adapters.base import CaError


class RemoteStatus(str, enum.Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


class ProviderApiError(CaError):
    """The provider refused the call (bad credentials, unknown user, revoked certificate, bad input)."""

    code = "provider_api_error"
    status = 502


class ProviderReplyMalformed(ProviderApiError):
    """The provider answered something that is not its documented shape (HTML, broken JSON, a missing field)."""

    code = "provider_reply_malformed"


class ProviderSessionRevoked(ProviderApiError):
    """The provider no longer honours the signer's linked session: the signer must link again."""

    code = "provider_session_revoked"


class SoleControlRefused(ProviderApiError):
    """The certificate would sign without a confirmation per request (auto-sign): kyso never uses it."""

    code = "sole_control_refused"


@dataclass(frozen=True)
class RemoteCredential:
    """A signer's certificate at the provider, and how the provider names it."""

    user_id: str
    credential_ref: str
    chain_der: tuple[bytes, ...]
    """The signer's certificate first, then the CA's (the root may be included)."""


@dataclass(frozen=True)
class RemoteResult:
    status: RemoteStatus
    signatures: tuple[bytes, ...] = ()
    detail: str = ""
    document_ids: tuple[str, ...] = ()
    """The provider's document id of each signature, when it names them (kyso reorders by them)."""
    anomaly: str = ""
    """Set when the reply did not fit the documented shapes (``unknown_status``): kept pending, audited."""


@dataclass(frozen=True)
class CallbackEvent:
    """A provider's call back about one transaction, parsed."""

    transaction_id: str
    callback_id: str
    """What makes a repeated delivery recognisable (the provider's message id where it has one)."""
    result: RemoteResult


@dataclass(frozen=True)
class DigestToSign:
    document_id: str
    name: str
    digest: bytes
    """SHA-256 of what is signed (for CMS: of the DER signed attributes)."""


@dataclass(frozen=True)
class CertificateOffer:
    """One certificate a provider lists for a user, before kyso chooses."""

    credential_ref: str
    chain_der: tuple[bytes, ...]
    personal: bool
    """False for an organisation seal (VNPT ``service_type: "ESEAL"``): never used for a person."""
    valid: bool
    """The provider's own status says usable."""
    auto_sign: bool = False
    """Signs without a confirmation per request (MISA ``isAutoSign``): refused, sole control."""


def choose_certificate(user_id: str, offers: list[CertificateOffer], serial_hex: str = "") -> RemoteCredential:
    """By serial when given, else a personal certificate the provider and the dates say is valid."""
    def serial(offer: CertificateOffer) -> int:
        return x509.load_der_x509_certificate(offer.chain_der[0]).serial_number

    def in_date(offer: CertificateOffer) -> bool:
        cert = x509.load_der_x509_certificate(offer.chain_der[0])
        return cert.not_valid_before_utc <= datetime.now(UTC) <= cert.not_valid_after_utc

    if serial_hex:
        wanted = int(serial_hex, 16)
        picked = [o for o in offers if serial(o) == wanted]
        if not picked:
            raise ProviderApiError(f"the provider lists no certificate {serial_hex} for {user_id}")
        candidates = picked
    else:
        candidates = [o for o in offers if o.personal and o.valid and in_date(o)]
        if not candidates:
            raise ProviderApiError(f"the provider lists no valid personal certificate for {user_id}")
    offer = max(candidates, key=lambda o: x509.load_der_x509_certificate(o.chain_der[0]).not_valid_after_utc)
    if not offer.personal:
        raise ProviderApiError(f"certificate {serial_hex} is an organisation seal; a person never signs with it")
    if offer.auto_sign:
        raise SoleControlRefused(f"certificate {serial_hex or offer.credential_ref} signs without confirmation")
    return RemoteCredential(user_id, offer.credential_ref, offer.chain_der)


class RemoteSigningClient(ABC):
    """One provider's remote-signing API."""

    max_digests: int | None = None
    """The most digests one transaction at the provider signs; None: no limit of the provider's own."""
    POLL_SECONDS: float = 5.0
    """How often integrators ask about one transaction (each client states its provider's cadence)."""
    POLL_WINDOW_SECONDS: float = 300.0

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout: float = 30.0,
                 callback_url: str | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.client_id = client_id
        self.client_secret = client_secret
        self.callback_url = callback_url
        """Where the provider calls back, as registered with it; None: polling only."""
        self.poll_seconds = self.POLL_SECONDS

    def close(self) -> None:
        self.http.close()

    @abstractmethod
    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        """The user's certificate and chain at the provider (by serial when given)."""

    @abstractmethod
    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        """Ask the user's phone to approve; a transaction id to poll."""

    @abstractmethod
    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        """Where the transaction stands now."""

    def parse_callback(self, body: Any) -> CallbackEvent:
        """A call back from the provider, parsed; the provider does not call back unless overridden."""
        raise ProviderReplyMalformed("this provider does not call back")

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        """The answer the provider expects to a call back."""
        return {"accepted": accepted, "message": message}

    def session_state(self, user_id: str) -> dict[str, Any] | None:
        """The signer's session at the provider, to keep between calls (None: the client needs none)."""
        return None

    def resume(self, user_id: str, session: Any) -> None:
        """Continue a session :meth:`session_state` returned earlier."""
