"""The native REST API over HTTP on loopback: raw, CAdES and PAdES requests, idempotency, bad input."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, utils

from broker.db.engine import read_transaction, transaction
from broker.db.models import SigningRequest
from broker.lifecycle.payload import RequestPayload
from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from signer import validate
from tests.conftest import ACTOR, Enrolled, load_credential
from tests.support import (
    AutoApprover,
    WebhookReceiver,
    b64,
    bearer_http,
    nss_db_with_root,
    openssl_cms_verify,
    pdfsig,
    relying_system_client,
    require_tool,
    wait_done,
)


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, phones: AutoApprover) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-rest")) as http:
        yield http


def test_raw_hashes(api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    digests = [hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()]
    created = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(d), "title": f"UNC {i}", "summary": "125.000.000 VND"} for i, d in enumerate(digests)]})
    assert created.status_code == 201, created.text
    assert len(created.json()["verification_code"]) == 4
    done = wait_done(api, created.json()["request_id"])
    assert done["state"] == "signed"
    key = load_credential(runtime, enrolled.rsa)
    public = serialization.load_der_public_key(x509.Certificate.load(key.certificate).public_key.dump())
    for d, s in zip(digests, done["signatures"]):
        public.verify(base64.b64decode(s), d, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]


def test_idempotency_under_concurrent_retries(api: httpx.Client, enrolled: Enrolled) -> None:
    body = {"credential_id": enrolled.ec, "hashes": [{"hash": b64(hashlib.sha256(b"idem").digest()), "title": "UNC"}]}
    ids: list[str] = []
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def retry() -> None:
        barrier.wait()
        response = api.post("/v1/requests", json=body, headers={"Idempotency-Key": "order-42"})
        statuses.append(response.status_code)
        ids.append(response.json()["request_id"])

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and sorted(statuses) == [200, 200, 200, 201], statuses
    other = api.post("/v1/requests", json={**body, "hashes": [{"hash": b64(bytes(32)), "title": "x"}]},
                     headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert wait_done(api, ids[0])["state"] == "signed"


def test_pades_upload_sign_download(api: httpx.Client, enrolled: Enrolled, tmp_path: Path,
                                    trust_roots: list[x509.Certificate]) -> None:
    order = tmp_path / "order.pdf"
    write_payment_order_pdf(order)
    uploaded = api.put("/v1/documents", content=order.read_bytes(), headers={"Content-Type": "application/pdf"})
    assert uploaded.status_code == 201, uploaded.text
    created = api.post("/v1/requests", json={"credential_id": enrolled.rsa_pss, "format": "pades", "documents": [
        {"document_id": uploaded.json()["document_id"], "title": "Ủy nhiệm chi UNC-7", "field": CHIEF_ACCOUNTANT_FIELD,
         "certify": True, "reason": "Kế toán trưởng ký", "stamp": "KẾ TOÁN TRƯỞNG\n%(signer)s"}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"])
    assert done["state"] == "signed", done
    signed = tmp_path / "signed.pdf"
    signed.write_bytes(api.get(done["documents"][0].split(str(api.base_url).rstrip("/"))[-1]).content)
    [report] = validate.validate_pdf(signed, trust_roots)
    assert report.ok and report.label == CHIEF_ACCOUNTANT_FIELD

    # The account holder signs the chief accountant's result, by naming its request.
    second = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "pades",
                                            "after_request_id": done["request_id"], "documents": [
        {"title": "Ủy nhiệm chi UNC-7", "field": "ChuTaiKhoan"}]})
    assert second.status_code == 201, second.text
    both = wait_done(api, second.json()["request_id"])
    final = tmp_path / "final.pdf"
    final.write_bytes(api.get(both["documents"][0].split(str(api.base_url).rstrip("/"))[-1]).content)
    reports = validate.validate_pdf(final, trust_roots)
    assert [r.label for r in reports] == [CHIEF_ACCOUNTANT_FIELD, "ChuTaiKhoan"] and all(r.ok for r in reports)
    pending = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "pades",
                                             "after_request_id": "no-such-request", "documents": [{"title": "x"}]})
    assert pending.status_code == 404


def test_cades_detached_and_enveloping(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, tmp_path: Path,
                                       root_pem: Path) -> None:
    content = "<PaymentOrder><amount>125000000</amount></PaymentOrder>".encode()
    created = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "cades", "documents": [
        {"content": b64(content), "title": "order.xml"},
        {"content": b64(content), "title": "order.xml (enveloping)", "enveloping": True}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"])
    (tmp_path / "order.xml").write_bytes(content)
    base = str(api.base_url).rstrip("/")
    (tmp_path / "order.p7s").write_bytes(api.get(done["documents"][0].removeprefix(base)).content)
    (tmp_path / "order.p7m").write_bytes(api.get(done["documents"][1].removeprefix(base)).content)
    assert openssl_cms_verify(tmp_path / "order.p7s", root_pem, tmp_path / "order.xml").returncode == 0
    assert openssl_cms_verify(tmp_path / "order.p7m", root_pem).returncode == 0
    # A detached signature needs its content's digest only: no copy of the content is written.
    # The enveloping one carries its content, read again when it is finished.
    with read_transaction(runtime.sessions) as s:
        request = s.get(SigningRequest, done["request_id"])
        assert request is not None
        work = RequestPayload.of(request).work
    assert work is not None and sorted(p.name for p in work.iterdir()) == ["in-1", "out-0.p7s", "out-1.p7m"]


def test_bad_input(api: httpx.Client, enrolled: Enrolled, runtime: Runtime, live_server: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    good = {"hash": b64(bytes(32)), "title": "x"}
    plain = tmp_path / "plain.pdf"
    write_payment_order_pdf(plain)
    encrypted = tmp_path / "encrypted.pdf"
    subprocess.run([require_tool("qpdf"), "--encrypt", "u", "o", "256", "--", str(plain), str(encrypted)], check=True)
    cases = [
        ({"credential_id": enrolled.rsa, "hashes": [{"hash": b64(bytes(20)), "title": "x"}]}, 400, "invalid_hash"),
        ({"credential_id": enrolled.rsa, "hash_algorithm": "md5", "hashes": [good]}, 400, "unsupported_algorithm"),
        ({"credential_id": enrolled.rsa, "hashes": []}, 400, "invalid_input"),
        ({"credential_id": enrolled.rsa, "hashes": [good] * 51}, 400, "invalid_input"),
        ({"credential_id": enrolled.rsa, "hashes": [{"hash": "%%%", "title": "x"}]}, 400, "invalid_input"),
        ({"credential_id": "someone-elses", "hashes": [good]}, 404, "not_found"),
        ({"credential_id": enrolled.rsa, "format": "pades", "documents": [{"content": b64(b"hello"), "title": "x"}]},
         400, "invalid_input"),
        ({"credential_id": enrolled.rsa, "format": "pades",
          "documents": [{"content": b64(encrypted.read_bytes()), "title": "x"}]}, 422, "invalid_document"),
        ({"credential_id": enrolled.rsa, "format": "sideways", "hashes": [good]}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        response = api.post("/v1/requests", json=body)
        assert (response.status_code, response.json().get("code")) == (status, code), (body, response.text)
    broken = api.post("/v1/requests", content=b"{nope", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["code"] == "invalid_request"
    anonymous = httpx.post(f"{live_server}/v1/requests", json={"credential_id": enrolled.rsa, "hashes": [good]})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "invalid_token"
    monkeypatch.setattr(runtime.settings, "max_document_bytes", 1000)
    blobs = runtime.settings.blobs
    before = sorted(blobs.rglob("*"))  # other tests' documents may be there
    too_big = api.put("/v1/documents", content=plain.read_bytes())
    assert too_big.status_code == 413 and too_big.json()["code"] == "document_too_large"
    assert sorted(blobs.rglob("*")) == before  # nothing half-written left behind


def test_cancel(api: httpx.Client, enrolled: Enrolled, runtime: Runtime) -> None:
    approver_paused = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(hashlib.sha256(b"cancel").digest()), "title": "to cancel"}]}).json()
    response = api.post(f"/v1/requests/{approver_paused['request_id']}/cancel")
    assert response.status_code in (200, 409)  # the phone may have approved it first


def test_webhook_delivered_once_with_hmac_after_a_retry(api: httpx.Client, runtime: Runtime, enrolled: Enrolled,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from broker.db.models import RelyingSystem
    from broker.lifecycle import webhooks

    receiver = WebhookReceiver(fail_first=1)
    monkeypatch.setattr(runtime.settings, "webhook_allow_private", True)
    with transaction(runtime.sessions) as s:
        rs = s.query(RelyingSystem).filter_by(name="dvc-rest").one()
        rs.webhook_allowlist = [receiver.url.rsplit("/", 2)[0] + "/"]
        secret = rs.webhook_secret
    try:
        created = api.post("/v1/requests", json={
            "credential_id": enrolled.ec, "webhook_url": receiver.url,
            "hashes": [{"hash": b64(hashlib.sha256(b"hook").digest()), "title": "UNC webhook"}]}).json()
        assert wait_done(api, created["request_id"])["state"] == "signed"
        deadline = time.monotonic() + 30
        log: list[dict] = []  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            log = api.get(f"/v1/requests/{created['request_id']}/webhooks").json()
            if log and log[0]["state"] == "delivered":
                break
            runtime.notifier.notify()
            time.sleep(0.5)
        assert log[0]["state"] == "delivered" and log[0]["attempts"] == 2, log
        assert len(receiver.calls) == 2
        headers, body = receiver.calls[-1]
        assert headers["Kyso-Event-Id"] == log[0]["event_id"]
        assert webhooks.verify_signature(str(secret), headers["Kyso-Signature"], body)
        assert not webhooks.verify_signature("another-secret", headers["Kyso-Signature"], body)
        assert json_state(body) == ("signed", created["request_id"])
    finally:
        receiver.close()


def json_state(body: str) -> tuple[str, str]:
    import json

    data = json.loads(body)
    return data["state"], data["request_id"]


def test_webhook_urls_outside_the_allowlist_or_private_are_refused(api: httpx.Client, enrolled: Enrolled) -> None:
    body = {"credential_id": enrolled.ec, "hashes": [{"hash": b64(bytes(32)), "title": "x"}]}
    for url, code in (("http://127.0.0.1:9/hook", "invalid_webhook_url"), ("https://example.invalid/hook",
                      "webhook_not_allowed"), ("file:///etc/passwd", "invalid_webhook_url")):
        response = api.post("/v1/requests", json={**body, "webhook_url": url})
        assert response.status_code == 400 and response.json()["code"] == code, url


# -- baseline levels above B-B: the credential's provider TSA, OCSP and CRLs (the emulators) ---------------


def _download(api: httpx.Client, url: str, target: Path) -> Path:
    target.write_bytes(api.get(url.split(str(api.base_url).rstrip("/"))[-1]).content)
    return target


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA"])
def test_pades_levels_validate_from_embedded_data(api: httpx.Client, enrolled: Enrolled, tmp_path: Path, level: str,
                                                  trust_roots: list[x509.Certificate], root_pem: Path,
                                                  emulator_reset: object) -> None:
    order = tmp_path / "order.pdf"
    write_payment_order_pdf(order)
    created = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "pades", "level": level,
                                             "documents": [{"content": b64(order.read_bytes()), "title": "UNC-9",
                                                            "field": CHIEF_ACCOUNTANT_FIELD, "certify": True}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"])
    assert (done["state"], done["level"]) == ("signed", level), done
    signed = _download(api, done["documents"][0], tmp_path / "signed.pdf")
    reports = validate.validate_pdf(signed, trust_roots, long_term=level != "B-T")
    assert all(r.ok and r.timestamp is not None for r in reports), reports
    assert len(reports) == (2 if level == "B-LTA" else 1)  # B-LTA adds a document timestamp
    report = pdfsig(signed, nss_db_with_root(tmp_path / "nss", root_pem))
    assert "Signature is Valid." in report and "Certificate is Trusted." in report, report


def test_cades_b_lt_carries_its_validation_data(api: httpx.Client, enrolled: Enrolled, tmp_path: Path,
                                               trust_roots: list[x509.Certificate], root_pem: Path,
                                               emulator_reset: object) -> None:
    created = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "cades", "level": "B-LT",
                                             "documents": [{"content": b64(b"<UNC/>"), "title": "UNC-10"}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"])
    assert (done["state"], done["level"]) == ("signed", "B-LT"), done
    sig = _download(api, done["documents"][0], tmp_path / "unc.xml.p7s")
    content = tmp_path / "unc.xml"
    content.write_bytes(b"<UNC/>")
    # Offline, hard-fail: stop the responders first so nothing could be fetched even by mistake.
    emulator_reset.state("viettel").outages = {"ocsp", "crl", "tsa"}  # type: ignore[attr-defined]
    report = validate.validate_cms(sig.read_bytes(), trust_roots, b"<UNC/>", long_term=True)
    assert report.ok and report.revocation_checked and report.timestamp is not None, report
    result = openssl_cms_verify(sig, root_pem, content)
    assert result.returncode == 0, result.stderr


def test_tsa_outage_fails_the_request_unless_a_lower_level_is_accepted(api: httpx.Client, enrolled: Enrolled,
                                                                       emulator_reset: object) -> None:
    emulator_reset.state("vnpt").outages = {"tsa"}  # type: ignore[attr-defined]
    body = {"credential_id": enrolled.rsa, "format": "cades", "level": "B-T",
            "documents": [{"content": b64(b"tsa down"), "title": "UNC-11"}]}
    failed = wait_done(api, api.post("/v1/requests", json=body).json()["request_id"])
    assert failed["state"] == "failed" and failed["failure_reason"].startswith("timestamp_unavailable"), failed
    lowered = wait_done(api, api.post("/v1/requests", json={**body, "accept_lower_level": True}).json()["request_id"])
    assert (lowered["state"], lowered["level"]) == ("signed", "B-B"), lowered


def test_a_certificate_revoked_at_the_ca_is_refused_before_signing(api: httpx.Client, runtime: Runtime,
                                                                   enrolled: Enrolled) -> None:
    from broker import credentials, directory
    from broker.db.models import Role
    from hsm import KeyAlgorithm

    with transaction(runtime.sessions) as s:  # a signer of its own: other tests sign as lan's newest credential
        directory.add_user(s, ACTOR, username="lan.revoked", unit_code="U001", full_name="Nguyễn Thị Lan",
                           national_id="001185000124", role=Role.CHIEF_ACCOUNTANT)
        credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("nacencomm"), username="lan.revoked",
                                        key_algorithm=KeyAlgorithm.EC_P256)
        credential_id, serial = credential.id, int(credential.serial_hex, 16)
    runtime.ca("nacencomm").revoke(serial)  # at the provider, behind kyso's back
    response = api.post("/v1/requests", json={"credential_id": credential_id,
                                              "hashes": [{"hash": b64(hashlib.sha256(b"x").digest()), "title": "x"}]})
    assert (response.status_code, response.json()["code"]) == (403, "certificate_revoked"), response.text
    with transaction(runtime.sessions) as s:
        from sqlalchemy import select

        from broker.db.models import SigningRequest

        assert s.scalar(select(SigningRequest).where(SigningRequest.credential_id == credential_id)) is None


@pytest.mark.parametrize(("body", "code"), [
    ({"format": "cades", "level": "B-LTA", "documents": [{"content": "aGk=", "title": "x"}]}, "invalid_input"),
    ({"format": "raw", "level": "B-T", "hashes": [{"hash": b64(hashlib.sha256(b"x").digest()), "title": "x"}]},
     "invalid_input"),
    ({"format": "cades", "level": "B-X", "documents": [{"content": "aGk=", "title": "x"}]}, "invalid_request"),
])
def test_levels_a_format_cannot_give_are_refused(api: httpx.Client, enrolled: Enrolled, body: dict, code: str) -> None:  # type: ignore[type-arg]
    response = api.post("/v1/requests", json={"credential_id": enrolled.rsa, **body})
    assert (response.status_code, response.json()["code"]) == (400, code), response.text


def test_another_client_s_upload_or_request_is_not_found_for_a_detached_signature(
        api: httpx.Client, runtime: Runtime, enrolled: Enrolled, live_server: str) -> None:
    """A detached CAdES document is hashed where it is stored: looked up through the caller all the
    same, so another client's upload or request does not exist for it, and nothing is left behind."""
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-other")) as other:
        theirs = other.put("/v1/documents", content=b"<UNC>theirs</UNC>").json()["document_id"]
        their_request = other.post("/v1/requests", json={
            "credential_id": enrolled.rsa, "format": "cades",
            "documents": [{"content": b64(b"<UNC>theirs</UNC>"), "title": "UNC"}]}).json()["request_id"]
        wait_done(other, their_request)  # signed: it has a result to sign after, for its own client only
    work = runtime.settings.blobs / "work"
    before = set(work.iterdir()) if work.exists() else set()
    by_upload = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades",
                                               "documents": [{"document_id": theirs, "title": "UNC"}]})
    after = api.post("/v1/requests", json={"credential_id": enrolled.rsa, "format": "cades",
                                           "after_request_id": their_request, "documents": [{"title": "UNC"}]})
    for refused in (by_upload, after):
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found"), refused.text
    assert (set(work.iterdir()) if work.exists() else set()) == before
