"""The providers' own remote-signing APIs (delegated mode: the key stays at the provider).

Each provider's client speaks its API's real shape (../shared/CA_APIS.md) and normalises the
outcome to :class:`RemoteStatus`; kyso builds CAdES/PAdES around the raw PKCS#1 v1.5
signatures it returns, with the chain the provider gives.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

import httpx

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


@dataclass(frozen=True)
class DigestToSign:
    document_id: str
    name: str
    digest: bytes
    """SHA-256 of what is signed (for CMS: of the DER signed attributes)."""


class RemoteSigningClient(ABC):
    """One provider's remote-signing API."""

    max_digests: int | None = None
    """The most digests one transaction at the provider signs; None: no limit of the provider's own."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)
        self.client_id = client_id
        self.client_secret = client_secret

    def close(self) -> None:
        self.http.close()

    @abstractmethod
    def credential(self, user_id: str) -> RemoteCredential:
        """The user's certificate and chain at the provider."""

    @abstractmethod
    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        """Ask the user's phone to approve; a transaction id to poll."""

    @abstractmethod
    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        """Where the transaction stands now."""
