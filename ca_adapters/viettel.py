"""Viettel-CA (MySign remote signing)."""

from __future__ import annotations

from ca_adapters.base import CertificateProfile, NameAttribute
from ca_adapters.emulated import EmulatedCaAdapter

PROFILE = CertificateProfile(
    provider="viettel",
    display_name="Viettel-CA",
    issuer=(NameAttribute("C", "VN"), NameAttribute("O", "Viettel Group"), NameAttribute("CN", "Viettel-CA RS (TEST)")),
    subject_uid_prefix="CMND:",
    key_algorithms=("rsa-2048",),
    test_key_algorithms=("rsa-3072", "ec-p256", "ec-p384"),
    key_usage=("digital_signature", "non_repudiation", "key_encipherment"),
    extended_key_usage=("client_auth", "email_protection"),
    notes="Profile decoded from a public chain: no certificatePolicies; intermediate pathlen 0.",
)


class ViettelAdapter(EmulatedCaAdapter):
    profile = PROFILE
