"""Nacencomm CA2."""

from __future__ import annotations

from ca_adapters.base import CertificateProfile, NameAttribute
from ca_adapters.emulated import EmulatedCaAdapter

PROFILE = CertificateProfile(
    provider="nacencomm",
    display_name="Nacencomm CA2",
    issuer=(NameAttribute("C", "VN"), NameAttribute("O", "NACENCOMM SCT"), NameAttribute("CN", "CA2 (TEST)")),
    subject_uid_prefix="MST:",
    key_algorithms=("rsa-2048",),
    test_key_algorithms=("rsa-3072", "ec-p256", "ec-p384"),
    key_usage=("digital_signature", "non_repudiation"),
    extended_key_usage=("client_auth", "email_protection"),
    notes="Modelled, not documented: subject prefix, key usages and EKUs assumed.",
)


class NacencommAdapter(EmulatedCaAdapter):
    profile = PROFILE
