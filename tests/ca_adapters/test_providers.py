"""The four providers' test CAs under the test national root, through the CaAdapter interface."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.runtime import Runtime
from ca_adapters import (
    CaError,
    CertificateUnknown,
    EnrollmentRefused,
    RevocationReason,
    Subject,
    UnknownProvider,
    get_adapter,
)
from ca_adapters.registry import provider_names

ISSUERS = {
    "viettel": ("Viettel-CA RS (TEST)", "Viettel Group", "CMND:"),
    "vnpt": ("VNPT SmartCA RS (TEST)", "VIETNAM POSTS AND TELECOMMUNICATIONS GROUP", "CCCD:"),
    "misa": ("MISA-CA (TEST)", "MISA JSC", "MST:"),
    "nacencomm": ("CA2 (TEST)", "NACENCOMM SCT", "MST:"),
}


def _csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_four_providers_are_registered() -> None:
    assert provider_names() == ["misa", "nacencomm", "viettel", "vnpt"]


@pytest.mark.parametrize("provider", sorted(ISSUERS))
def test_issue_revoke_status(runtime: Runtime, provider: str) -> None:
    adapter = runtime.ca(provider)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = adapter.enroll(_csr(key), Subject("Phạm Minh Đức", "079088001234", "Sở Tài chính"), "ec-p256")
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    cn, org, uid_prefix = ISSUERS[provider]
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    assert cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == org
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == uid_prefix + "079088001234"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Phạm Minh Đức"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    intermediate = x509.load_der_x509_certificate(issued.chain_der[0])
    root = x509.load_der_x509_certificate(issued.chain_der[1])
    assert root.subject == root.issuer and "Vietnam National Root CA" in root.subject.rfc4514_string()
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    cert.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert adapter.trust_anchors() == [issued.chain_der[1]]

    assert not adapter.status(issued.serial).revoked
    status = adapter.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert status.revoked and status.reason == "key_compromise"
    assert adapter.status(issued.serial).revoked
    with pytest.raises(CertificateUnknown):
        adapter.status(12345)


def test_enrollment_refusals(runtime: Runtime) -> None:
    adapter = runtime.ca("vnpt")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = Subject("A", "001099000001")
    with pytest.raises(EnrollmentRefused, match="malformed"):
        adapter.enroll(b"\x30\x03abc", subject, "ec-p256")
    tampered = bytearray(_csr(key))
    tampered[-5] ^= 0xFF  # the CSR's signature no longer verifies: no proof of possession
    with pytest.raises(EnrollmentRefused):
        adapter.enroll(bytes(tampered), subject, "ec-p256")
    with pytest.raises(EnrollmentRefused, match="name"):
        adapter.enroll(_csr(key), Subject(" ", "001099000001"), "ec-p256")
    # Outside test mode a provider issues only its real profile's key types (RSA-2048).
    strict = get_adapter("vnpt", runtime.settings.pki_dir, test_mode=False)
    assert not strict.accepts_key_algorithm("ec-p256") and strict.accepts_key_algorithm("rsa-2048")
    with pytest.raises(EnrollmentRefused, match="does not issue"):
        strict.enroll(_csr(key), subject, "ec-p256")
    with pytest.raises(UnknownProvider) as unknown:
        get_adapter("acme", runtime.settings.pki_dir)
    assert unknown.value.code == "unknown_provider"


def test_settings_replace_a_providers_service_urls(runtime: Runtime) -> None:
    """Production points kyso at the real provider's OCSP, TSA and signing API; the emulator's are defaults."""
    real = {"tsa_url": "https://tsa.example.vn/tsa", "signing_api_url": "https://rmsp.example.vn"}
    configured = Runtime(runtime.settings.model_copy(update={"provider_endpoints": {"vnpt": real}}), hsm=runtime.hsm)
    endpoints = configured.ca("vnpt").endpoints()
    assert (endpoints.tsa_url, endpoints.signing_api_url) == (real["tsa_url"], real["signing_api_url"])
    assert endpoints.ocsp_url == runtime.ca("vnpt").endpoints().ocsp_url  # not overridden: the emulator's
    assert str(configured.ca("vnpt").remote_signing().http.base_url).rstrip("/") == real["signing_api_url"]
    assert configured.ca("misa").endpoints() == runtime.ca("misa").endpoints()
    broken = Runtime(runtime.settings.model_copy(update={"provider_endpoints": {"vnpt": {"tsa": "x"}}}), hsm=runtime.hsm)
    with pytest.raises(CaError, match="unknown endpoint settings"):
        broken.ca("vnpt")
