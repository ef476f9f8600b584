"""MISA eSign."""

from __future__ import annotations

from ca_adapters.base import CertificateProfile, NameAttribute
from ca_adapters.emulated import EmulatedCaAdapter

PROFILE = CertificateProfile(
    provider="misa",
    display_name="MISA eSign",
    issuer=(NameAttribute("C", "VN"), NameAttribute("O", "MISA JSC"), NameAttribute("CN", "MISA-CA (TEST)")),
    subject_uid_prefix="MST:",
    key_algorithms=("rsa-2048",),
    test_key_algorithms=("rsa-3072", "ec-p256", "ec-p384"),
    key_usage=("digital_signature", "non_repudiation"),
    extended_key_usage=("client_auth", "email_protection"),
    notes="Issuer organisation, key usages and EKUs assumed (not in public material).",
)


class MisaAdapter(EmulatedCaAdapter):
    profile = PROFILE
