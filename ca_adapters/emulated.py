"""The adapter behaviour every provider shares while its CA is the local emulator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ca_adapters.base import (
    CaAdapter,
    CaError,
    CertificateProfile,
    CertificateStatus,
    Endpoints,
    IssuedCertificate,
    RevocationReason,
    Subject,
)
from ca_adapters.emulator.api_client import api_client
from ca_adapters.remote_clients import CLIENTS
from ca_adapters.remote_signing import RemoteSigningClient
from ca_adapters.testpki import IssuingCa, TestPki

EMULATOR_POLL_SECONDS = 0.2


class EmulatedCaAdapter(CaAdapter):
    """Enrollment and revocation against the provider's emulated issuing CA."""

    profile: CertificateProfile

    def __init__(self, pki_dir: Path, *, test_mode: bool = True, endpoints: Mapping[str, str] | None = None) -> None:
        self._pki = TestPki(pki_dir)
        self.test_mode = test_mode
        self._ca: IssuingCa | None = None
        unknown = set(endpoints or {}) - {f.name for f in fields(Endpoints)}
        if unknown:
            raise CaError(f"unknown endpoint settings for {self.profile.provider}: {', '.join(sorted(unknown))}")
        self._overrides = dict(endpoints or {})

    @property
    def ca(self) -> IssuingCa:
        if self._ca is None:
            self._ca = self._pki.issuing_ca(self.profile)
        return self._ca

    def enroll(self, csr_der: bytes, subject: Subject, key_algorithm: str) -> IssuedCertificate:
        return self.ca.issue(csr_der, subject, key_algorithm, test_mode=self.test_mode)

    def revoke(self, serial: int, reason: RevocationReason = RevocationReason.UNSPECIFIED) -> CertificateStatus:
        return self.ca.revoke(serial, reason)

    def status(self, serial: int) -> CertificateStatus:
        return self.ca.status(serial)

    def trust_anchors(self) -> list[bytes]:
        return [self.ca.root().public_bytes(serialization.Encoding.DER)]

    def endpoints(self) -> Endpoints:
        base = self.ca.base_url
        emulated = Endpoints(ocsp_url=f"{base}/ocsp", crl_url=f"{base}/crl/ca.crl", tsa_url=f"{base}/tsa",
                             signing_api_url=base)
        return replace(emulated, **self._overrides)

    def remote_signing(self) -> RemoteSigningClient:
        """A client of the provider's own remote-signing API (its emulator here), with kyso's API credentials."""
        client = api_client(self.ca.directory)
        endpoints = self.endpoints()
        remote = CLIENTS[self.name](endpoints.signing_api_url or self.ca.base_url, client.client_id,
                                    client.client_secret, callback_url=endpoints.callback_url)
        if "signing_api_url" not in self._overrides:
            # The local emulator decides in a fraction of a second; a real provider at its own cadence.
            remote.poll_seconds = EMULATOR_POLL_SECONDS
        return remote
