"""CAdES B-B, detached and enveloping, checked by OpenSSL and by our validator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms, x509

from broker import credentials
from broker.runtime import Runtime
from signer import InvalidParameters, cades, validate
from signer.errors import InvalidDocument
from tests.conftest import Enrolled, load_credential
from tests.support import flip_byte, openssl_cms_verify

CONTENT = '<?xml version="1.0"?><PaymentOrder><amount>125000000</amount><payee>Việt Hưng</payee></PaymentOrder>'.encode()


@pytest.fixture(scope="module", params=["rsa", "rsa_pss", "ec"])
def key(request: pytest.FixtureRequest, runtime: Runtime, enrolled: Enrolled):  # type: ignore[no-untyped-def]
    credential = load_credential(runtime, getattr(enrolled, request.param))
    return credentials.key_signer(runtime.hsm, credential)


def test_detached_accepted_by_openssl_and_by_our_validator(key, tmp_path: Path, root_pem: Path,  # type: ignore[no-untyped-def]
                                                           trust_roots: list[x509.Certificate]) -> None:
    content = tmp_path / "order.xml"
    content.write_bytes(CONTENT)
    sig = tmp_path / "order.xml.p7s"
    sig.write_bytes(cades.sign(key, content=CONTENT))
    result = openssl_cms_verify(sig, root_pem, content)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    report = validate.validate_cms(sig.read_bytes(), trust_roots, CONTENT)
    assert report.ok and report.intact and report.trusted
    assert "Nguyễn Thị Lan" in report.signer or "Trần Văn Hùng" in report.signer


def test_enveloping_accepted_by_openssl_and_by_our_validator(key, tmp_path: Path, root_pem: Path,  # type: ignore[no-untyped-def]
                                                             trust_roots: list[x509.Certificate]) -> None:
    sig = tmp_path / "order.xml.p7m"
    sig.write_bytes(cades.sign(key, content=CONTENT, detached=False))
    result = openssl_cms_verify(sig, root_pem)
    assert result.returncode == 0, result.stderr
    assert validate.validate_cms(sig.read_bytes(), trust_roots).ok


def test_signed_attributes_are_the_cades_baseline_set(key) -> None:  # type: ignore[no-untyped-def]
    info = cms.ContentInfo.load(cades.sign(key, content=CONTENT))
    signed_data = info["content"]
    signer_info = signed_data["signer_infos"][0]
    types = {a["type"].native for a in signer_info["signed_attrs"]}
    assert types == {"content_type", "message_digest", "signing_time", "signing_certificate_v2"}
    certs = [c.chosen for c in signed_data["certificates"]]
    assert certs[0].dump() == key.certificate.dump()
    assert len(certs) == 2  # the signer and its intermediate; the root is the verifier's anchor
    digest = next(a for a in signer_info["signed_attrs"] if a["type"].native == "message_digest")
    assert digest["values"][0].native == hashlib.sha256(CONTENT).digest()


def test_one_changed_byte_is_detected(key, tmp_path: Path, root_pem: Path,  # type: ignore[no-untyped-def]
                                      trust_roots: list[x509.Certificate]) -> None:
    content = tmp_path / "order.xml"
    content.write_bytes(CONTENT)
    sig = tmp_path / "order.xml.p7s"
    sig.write_bytes(cades.sign(key, content=CONTENT))
    flip_byte(content, 10)
    assert openssl_cms_verify(sig, root_pem, content).returncode != 0
    assert not validate.validate_cms(sig.read_bytes(), trust_roots, content.read_bytes()).ok
    enveloping = tmp_path / "order.p7m"
    enveloping.write_bytes(cades.sign(key, content=CONTENT, detached=False))
    flip_byte(enveloping, enveloping.read_bytes().index(b"PaymentOrder"))
    assert openssl_cms_verify(enveloping, root_pem).returncode != 0
    assert not validate.validate_cms(enveloping.read_bytes(), trust_roots).ok


def test_detached_from_a_precomputed_digest(key, trust_roots: list[x509.Certificate]) -> None:  # type: ignore[no-untyped-def]
    sig = cades.sign(key, content_digest=hashlib.sha256(CONTENT).digest())
    assert validate.validate_cms(sig, trust_roots, CONTENT).ok


def test_bad_requests(key, trust_roots: list[x509.Certificate]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameters):
        cades.sign(key)
    with pytest.raises(InvalidParameters, match="enveloping"):
        cades.sign(key, content_digest=bytes(32), detached=False)
    with pytest.raises(Exception, match="32 bytes"):
        cades.sign(key, content_digest=bytes(20))
    with pytest.raises(InvalidDocument):
        validate.validate_cms(b"not a cms", trust_roots)
    with pytest.raises(InvalidDocument, match="needs its content"):
        validate.validate_cms(cades.sign(key, content=CONTENT), trust_roots)
