"""VNPT SmartCA."""

from __future__ import annotations

from ca_adapters.base import CertificateProfile, NameAttribute
from ca_adapters.emulated import EmulatedCaAdapter

PROFILE = CertificateProfile(
    provider="vnpt",
    display_name="VNPT SmartCA",
    issuer=(
        NameAttribute("C", "VN"),
        NameAttribute("O", "VIETNAM POSTS AND TELECOMMUNICATIONS GROUP"),
        NameAttribute("CN", "VNPT SmartCA RS (TEST)"),
    ),
    subject_uid_prefix="CCCD:",
    key_algorithms=("rsa-2048",),
    test_key_algorithms=("rsa-3072", "ec-p256", "ec-p384"),
    key_usage=("digital_signature", "non_repudiation"),
    extended_key_usage=("client_auth", "email_protection"),
    notes="Key usages and EKUs assumed (not in public material).",
)


class VnptAdapter(EmulatedCaAdapter):
    profile = PROFILE
