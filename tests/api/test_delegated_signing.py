"""Delegated credentials: the key stays at the provider, the signer confirms in the provider's app.

Per provider, over HTTP: the linked credentials say where their key is, a CAdES request through the
REST API built around the provider's signature and checked by pyHanko and OpenSSL, refusal and
time-out at the provider mapped to the request's states; PAdES B-LT and CSC for some; kyso's own
phone can neither see nor decide a delegated request. (Linking: the ``linked`` fixture; the provider
calling back: test_provider_callbacks.py.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import x509
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from sqlalchemy import select

from biometrics import Decision
from broker import approvals
from broker.db.engine import transaction
from broker.db.models import Credential, RequestState, SigningRequest
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from ca_adapters.emulator.server import EmulatorSet
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso_client import KysoClient, KysoError
from signer import validate
from tests.api.conftest import PROVIDERS
from tests.conftest import ACTOR, Enrolled
from tests.support import (
    b64,
    bearer_http,
    link_delegated,
    nss_db_with_root,
    openssl_cms_verify,
    pdfsig,
    relying_system_client,
    wait_done,
)


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-delegated"), timeout=60) as http:
        yield http


def test_linked_credentials_say_where_their_key_is(api: httpx.Client, linked: dict[str, str]) -> None:
    listed = {c["credential_id"]: c for c in api.get("/v1/credentials", params={"user": "lan"}).json()}
    for provider, credential_id in linked.items():
        assert (listed[credential_id]["mode"], listed[credential_id]["provider"]) == ("delegated", provider)
        assert listed[credential_id]["key_algo"] == "rsa-2048"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_delegated_cades_through_the_rest_api(api: httpx.Client, linked: dict[str, str], provider: str,
                                              emulator_reset: EmulatorSet, trust_roots: list[x509.Certificate],
                                              root_pem: Path, tmp_path: Path) -> None:
    content = f"<UNC provider='{provider}'/>".encode()
    created = api.post("/v1/requests", json={"credential_id": linked[provider], "format": "cades",
                                             "documents": [{"content": b64(content), "title": "UNC-D1"}]})
    assert created.status_code == 201, created.text
    assert created.json()["state"] == "pending"  # waiting for the signer in the provider's app
    done = wait_done(api, created.json()["request_id"], wait=10)
    assert done["state"] == "signed", done
    sig = tmp_path / "unc.xml.p7s"
    sig.write_bytes(api.get(done["documents"][0].split(str(api.base_url).rstrip("/"))[-1]).content)
    assert validate.validate_cms(sig.read_bytes(), trust_roots, content).ok
    (tmp_path / "unc.xml").write_bytes(content)
    result = openssl_cms_verify(sig, root_pem, tmp_path / "unc.xml")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("provider", ["viettel", "misa"])
def test_delegated_pades_b_lt(api: httpx.Client, linked: dict[str, str], provider: str, emulator_reset: EmulatorSet,
                              trust_roots: list[x509.Certificate], root_pem: Path, tmp_path: Path) -> None:
    order = tmp_path / "order.pdf"
    write_payment_order_pdf(order)
    created = api.post("/v1/requests", json={"credential_id": linked[provider], "format": "pades", "level": "B-LT",
                                             "documents": [{"content": b64(order.read_bytes()), "title": "UNC-D2",
                                                            "field": CHIEF_ACCOUNTANT_FIELD, "certify": True}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"], wait=10)
    assert (done["state"], done["level"]) == ("signed", "B-LT"), done
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(api.get(done["documents"][0].split(str(api.base_url).rstrip("/"))[-1]).content)
    [report] = validate.validate_pdf(signed, trust_roots, long_term=True)
    assert report.ok and report.revocation_checked, report
    report_text = pdfsig(signed, nss_db_with_root(tmp_path / "nss", root_pem))
    assert "Signature is Valid." in report_text and "Certificate is Trusted." in report_text, report_text


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("phone", "state"), [("refuse", "rejected"), ("timeout", "expired")])
def test_refusal_and_time_out_at_the_provider_end_the_request(api: httpx.Client, linked: dict[str, str],
                                                              provider: str, phone: str, state: str,
                                                              emulator_reset: EmulatorSet) -> None:
    emulator_reset.state(provider).set_phone(phone)
    created = api.post("/v1/requests", json={"credential_id": linked[provider], "hashes": [
        {"hash": b64(hashlib.sha256(f"{provider}{phone}".encode()).digest()), "title": "UNC-D3"}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"], wait=10)  # the emulators' transactions live 3 s in tests
    assert done["state"] == state, done
    assert done["signatures"] is None


def test_a_batch_the_provider_cannot_take_is_refused_up_front(api: httpx.Client, runtime: Runtime,
                                                               linked: dict[str, str], emulator_reset: EmulatorSet) -> None:
    """Nacencomm signs one digest per transaction: CSC says so, and a larger batch is a clear 400."""
    from sqlalchemy import func

    nacencomm = linked["nacencomm"]
    assert api.post("/csc/v2/credentials/info", json={"credentialID": nacencomm}).json()["multisign"] == 1
    assert api.post("/csc/v2/credentials/info", json={"credentialID": linked["vnpt"]}).json()["multisign"] == 50

    def count() -> int:
        with transaction(runtime.sessions) as s:
            return s.scalar(select(func.count()).select_from(SigningRequest)
                            .where(SigningRequest.credential_id == nacencomm)) or 0

    before = count()
    created = api.post("/v1/requests", json={"credential_id": nacencomm, "hashes": [
        {"hash": b64(hashlib.sha256(bytes([n])).digest()), "title": f"UNC {n}"} for n in range(2)]})
    assert created.status_code == 400 and created.json()["code"] == "invalid_input", created.text
    assert "at most 1 hashes" in created.json()["detail"]
    authorize = api.post("/csc/v2/credentials/authorize", json={"credentialID": nacencomm, "numSignatures": 2,
                                                                "hashes": [b64(hashlib.sha256(b"a").digest()),
                                                                           b64(hashlib.sha256(b"b").digest())],
                                                                "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
    assert authorize.status_code == 400 and authorize.json()["error"] == "invalid_request", authorize.text
    assert count() == before  # nothing written


def test_csc_authorize_waits_for_the_providers_app(runtime: Runtime, live_server: str, linked: dict[str, str],
                                                   emulator_reset: EmulatorSet) -> None:
    client_id, secret = relying_system_client(runtime, "dvc-delegated-csc")
    kyso_client = KysoClient(live_server, client_id=client_id, client_secret=secret)
    credential_id = linked["viettel"]
    assert kyso_client.credential_info(credential_id)["key"]["algo"] == ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.1"]
    digests = [hashlib.sha256(b"csc one").digest(), hashlib.sha256(b"csc two").digest()]
    auth = kyso_client.authorize(credential_id, digests)
    signatures = kyso_client.sign_hash(credential_id, auth.sad, digests, "1.2.840.113549.1.1.11")
    with transaction(runtime.sessions) as s:
        cert = crypto_x509.load_der_x509_certificate(s.get(Credential, credential_id).certificate)  # type: ignore[union-attr]
    for digest, signature in zip(digests, signatures):
        cert.public_key().verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[call-arg, union-attr]
    with pytest.raises(KysoError) as reused:
        kyso_client.sign_hash(credential_id, auth.sad, digests, "1.2.840.113549.1.1.11")
    assert reused.value.error == "invalid_request"
    with pytest.raises(KysoError) as sha384:
        kyso_client.authorize(credential_id, [hashlib.sha384(b"x").digest()])
    assert sha384.value.error == "invalid_request"
    emulator_reset.state("viettel").set_phone("refuse")
    with pytest.raises(KysoError) as denied:
        kyso_client.authorize(credential_id, [hashlib.sha256(b"refused").digest()])
    assert (denied.value.status, denied.value.error) == (403, "access_denied")


def test_kyso_phone_neither_sees_nor_decides_a_delegated_request(runtime: Runtime, linked: dict[str, str],
                                                                 emulator_reset: EmulatorSet) -> None:
    emulator_reset.state("misa").set_phone("timeout")
    with transaction(runtime.sessions) as s:
        credential = s.get(Credential, linked["misa"])
        request = signing_requests.create(s, runtime.settings, ACTOR, credential,  # type: ignore[arg-type]
                                  [signing_requests.DocumentToSign(hashlib.sha256(b"p").digest(), "UNC-D4")],
                                  relying_system="dvc-delegated", provider=runtime.ca(credential.provider))
        request_id, user_id = request.id, request.user_id
    with transaction(runtime.sessions) as s:
        assert request_id not in [r.id for r in signing_requests.pending_for_user(s, user_id)]
        with pytest.raises(approvals.ConfirmedAtProvider):
            approvals.apply_decision(s, ACTOR, signing_requests.get(s, request_id), Decision.APPROVE, via="device:x",
                                     evidence={})
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.PENDING


def test_a_hosted_signing_path_refuses_a_delegated_credential(runtime: Runtime, linked: dict[str, str]) -> None:
    from broker import credentials
    from broker.errors import CredentialNotUsable

    with transaction(runtime.sessions) as s, pytest.raises(CredentialNotUsable):
        credentials.key_signer(runtime.hsm, s.get(Credential, linked["vnpt"]))  # type: ignore[arg-type]


def test_a_delegated_certificate_revoked_at_the_provider_is_refused_first(api: httpx.Client, runtime: Runtime,
                                                                          emulators: EmulatorSet) -> None:
    credential_id = link_delegated(runtime, emulators, "viettel", "079199000123")
    with transaction(runtime.sessions) as s:
        serial = int(s.get(Credential, credential_id).serial_hex, 16)  # type: ignore[union-attr]
    runtime.ca("viettel").revoke(serial)  # at the provider, behind kyso's back
    response = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
        {"hash": b64(hashlib.sha256(b"revoked").digest()), "title": "UNC-D5"}]})
    assert (response.status_code, response.json()["code"]) == (403, "certificate_revoked"), response.text
