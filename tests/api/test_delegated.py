"""Delegated credentials: the key stays at the provider, the signer confirms in the provider's app.

Per provider, over HTTP: link the provider's signer (the CLI for one), a CAdES request through the
REST API built around the provider's signature and checked by pyHanko and OpenSSL, refusal and
time-out at the provider mapped to the request's states; PAdES B-LT and CSC for some; kyso's
own phone can neither see nor decide a delegated request.
"""

from __future__ import annotations

import base64
import hashlib
import time
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
from broker import approvals, clients
from broker.credentials import delegated
from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, CredentialMode, ProviderCallback, RequestState, SigningRequest
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from ca_adapters.emulator import EmulatorSet
from ca_adapters.emulator.provider_apis import misa_otp, vnpt_callback_body
from ca_adapters.emulator.server import register_callback
from ca_adapters.emulator.state import CallbackTarget
from ca_adapters.remote_clients import MisaClient, VnptClient
from ca_adapters.remote_signing import RemoteCredential
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso.cli import run as kyso
from kyso_client import KysoClient, KysoError
from signer import validate
from tests.conftest import ACTOR, Enrolled
from tests.support import nss_db_with_root, openssl_cms_verify, pdfsig

PROVIDERS = ["viettel", "vnpt", "misa", "nacencomm"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _link(runtime: Runtime, emulators: EmulatorSet, provider: str, provider_user: str) -> str:
    user = emulators.state(provider).add_user(provider_user, "Nguyễn Thị Lan", "Trường Tiểu học Nguyễn Trãi")
    adapter = runtime.ca(provider)
    client = adapter.remote_signing()
    if isinstance(client, MisaClient):
        client.login(provider_user, user.password, misa_otp(user))
    with transaction(runtime.sessions) as s:
        # Nacencomm names its certificates by an integer id (idcts); the others by serial.
        ref = str(user.idcts) if provider == "nacencomm" else f"{user.certificate.serial_number:x}"
        credential = delegated.link(s, ACTOR, adapter, client, username="lan", provider_user_id=provider_user,
                                    serial_hex=ref)
        return credential.id


@pytest.fixture(scope="module")
def linked(runtime: Runtime, emulators: EmulatorSet, enrolled: Enrolled) -> dict[str, str]:
    """One delegated credential per provider for the chief accountant; VNPT's through the CLI."""
    out = {p: _link(runtime, emulators, p, f"0791{n}0000123") for n, p in enumerate(PROVIDERS) if p != "vnpt"}
    user = emulators.state("vnpt").add_user("079130000123", "Nguyễn Thị Lan")
    code = kyso(["--data-dir", str(runtime.settings.data_dir), "cert", "link", "--user", "lan", "--ca", "vnpt",
                 "--provider-user", user.user_id])
    assert code == 0
    with transaction(runtime.sessions) as s:
        out["vnpt"] = s.scalar(select(Credential.id).where(Credential.provider == "vnpt",
                                                           Credential.mode == CredentialMode.DELEGATED))
    return out


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-delegated", ["U001"])
        client, secret = clients.add_client(s, ACTOR, "dvc-delegated")
    token = KysoClient(live_server, client_id=client.client_id, client_secret=secret).access_token
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield http


def _wait(api: httpx.Client, request_id: str) -> dict:  # type: ignore[type-arg]
    for _ in range(10):
        body = api.get(f"/v1/requests/{request_id}", params={"wait": 10}).json()
        if body["state"] not in ("pending", "approved"):
            return body
    raise AssertionError("the request did not finish in time")


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
    done = _wait(api, created.json()["request_id"])
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
    done = _wait(api, created.json()["request_id"])
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
    done = _wait(api, created.json()["request_id"])  # the emulators' transactions live 3 s in tests
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
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-delegated-csc", ["U001"])
        client, secret = clients.add_client(s, ACTOR, "dvc-delegated-csc")
    kyso_client = KysoClient(live_server, client_id=client.client_id, client_secret=secret)
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
    credential_id = _link(runtime, emulators, "viettel", "079199000123")
    with transaction(runtime.sessions) as s:
        serial = int(s.get(Credential, credential_id).serial_hex, 16)  # type: ignore[union-attr]
    runtime.ca("viettel").revoke(serial)  # at the provider, behind kyso's back
    response = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
        {"hash": b64(hashlib.sha256(b"revoked").digest()), "title": "UNC-D5"}]})
    assert (response.status_code, response.json()["code"]) == (403, "certificate_revoked"), response.text


# -- the providers calling back; polling as the fallback -------------------------------------------------

SECRETS = {"vnpt": "vnpt-callback-secret-0123456789", "viettel": "viettel-callback-secret-0123456789",
           "misa": "misa-callback-secret-0123456789"}


@pytest.fixture
def callbacks(runtime: Runtime, emulators: EmulatorSet, live_server: str) -> Iterator[dict[str, str]]:
    """VNPT, Viettel and MISA call kyso back; kyso polls them at their documented cadence (not the emulator's)."""
    settings = runtime.settings
    saved = (dict(settings.provider_endpoints), dict(settings.provider_callbacks))
    urls = {}
    for provider, secret in SECRETS.items():
        url = f"{live_server}/providers/{provider}/callback" + ("" if provider == "viettel" else f"?key={secret}")
        urls[provider] = url
        settings.provider_endpoints[provider] = {"signing_api_url": runtime.ca(provider).endpoints().signing_api_url or "",
                                                 "callback_url": url}
        settings.provider_callbacks[provider] = {"secret": secret, "client_id": f"{provider}-at-kyso",
                                                 "allow_from": ["127.0.0.1/32", "::1/128"]}
        register_callback(emulators.state(provider), provider, CallbackTarget(
            url, f"{live_server}/providers/{provider}/token", f"{provider}-at-kyso", secret))
    yield urls
    settings.provider_endpoints, settings.provider_callbacks = saved
    for provider in SECRETS:
        register_callback(emulators.state(provider), provider, None)


def _audit(runtime: Runtime, action: str, **where: str) -> list[AuditEvent]:
    with transaction(runtime.sessions) as s:
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))
        return [e for e in events if all(getattr(e, k) == v for k, v in where.items())]


def _transaction_of(runtime: Runtime, request_id: str) -> str:
    for _ in range(100):
        with transaction(runtime.sessions) as s:
            tid = s.scalar(select(SigningRequest.provider_transaction).where(SigningRequest.id == request_id))
        if tid:
            return tid
        time.sleep(0.05)
    raise AssertionError("never forwarded")


@pytest.mark.parametrize(("provider", "cadence"), [("vnpt", 10.0), ("viettel", 2.0), ("misa", 5.0)])
def test_a_callback_moves_the_request_before_the_next_poll(api: httpx.Client, runtime: Runtime, linked: dict[str, str],
                                                           callbacks: dict[str, str], emulator_reset: EmulatorSet,
                                                           provider: str, cadence: float) -> None:
    assert runtime.ca(provider).remote_signing().poll_seconds == cadence  # a real provider: its documented cadence
    started = time.monotonic()
    created = api.post("/v1/requests", json={"credential_id": linked[provider], "hashes": [
        {"hash": b64(hashlib.sha256(f"cb-{provider}".encode()).digest()), "title": "UNC-CB"}]})
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    done = _wait(api, request_id)
    assert done["state"] == "signed", done
    assert time.monotonic() - started < cadence  # the first poll said pending; the call back did the rest
    with transaction(runtime.sessions) as s:
        assert s.scalar(select(ProviderCallback.status).where(ProviderCallback.request_id == request_id)) == "SUCCESS"
    [event] = _audit(runtime, "provider.callback", target_id=request_id)
    assert event.outcome == "ok" and event.actor.startswith(f"provider:{provider}@")


def test_callbacks_are_idempotent_and_refusals_audited(api: httpx.Client, runtime: Runtime, linked: dict[str, str],
                                                       callbacks: dict[str, str], emulator_reset: EmulatorSet,
                                                       live_server: str) -> None:
    state = emulator_reset.state("vnpt")
    created = api.post("/v1/requests", json={"credential_id": linked["vnpt"], "hashes": [
        {"hash": b64(hashlib.sha256(b"idempotent").digest()), "title": "UNC-CB2"}]})
    request_id = created.json()["request_id"]
    assert _wait(api, request_id)["state"] == "signed"
    body = vnpt_callback_body(state, state.get(_transaction_of(runtime, request_id)))  # type: ignore[arg-type]
    again = httpx.post(callbacks["vnpt"], json=body)
    assert again.status_code == 200 and again.json()["message"] == "already received"
    assert [e.details.get("duplicate") for e in _audit(runtime, "provider.callback", target_id=request_id)] == [None, True]

    before = len(_audit(runtime, "provider.callback", outcome="refused"))
    url = f"{live_server}/providers/vnpt/callback"
    assert httpx.post(f"{url}?key=wrong", json=body).status_code == 401
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(callbacks["vnpt"], json={**body, "transaction_id": "no-such"}).status_code == 404
    assert httpx.post(callbacks["vnpt"], content=b"<html>oops</html>").status_code == 400
    assert httpx.post(callbacks["vnpt"], json={**body, "sp_id": "someone-else"}).status_code == 400
    assert httpx.post(callbacks["vnpt"], json={**body, "message": "NEW_STATE", "signed_files": []}).status_code == 422
    assert httpx.post(f"{live_server}/providers/nacencomm/callback", json={}).status_code == 404  # it never calls back
    # Viettel: without the token of kyso's client-credentials endpoint, or with a wrong client secret.
    viettel = {"meta_data": {"request_id": "r", "transaction_id": "t", "status": "1"}, "data": {"results": []}}
    assert httpx.post(callbacks["viettel"], json=viettel).status_code == 401
    token_url = f"{live_server}/providers/viettel/token"
    assert httpx.post(token_url, data={"grant_type": "client_credentials", "client_id": "viettel-at-kyso",
                                       "client_secret": "wrong"}).status_code == 401
    forged = httpx.post(callbacks["viettel"], json=viettel, headers={"Authorization": f"Bearer 9999999999.{'0' * 64}"})
    assert forged.status_code == 401 and forged.json()["status_code"] != "00"
    runtime.settings.provider_callbacks["vnpt"]["allow_from"] = ["10.0.0.0/8"]  # not from this address
    assert httpx.post(callbacks["vnpt"], json=body).status_code == 403
    refused = _audit(runtime, "provider.callback", outcome="refused")[before:]
    assert [e.details["reason"] for e in refused] == [
        "bad_credentials", "bad_credentials", "unknown_transaction", "malformed", "malformed", "unknown_status",
        "callbacks_not_configured", "bad_credentials", "bad_credentials", "source_not_allowed"]
    assert _audit(runtime, "provider.callback_token", outcome="refused")


def test_a_callback_whose_signature_does_not_verify_fails_the_request(api: httpx.Client, runtime: Runtime,
                                                                      linked: dict[str, str], callbacks: dict[str, str],
                                                                      emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("vnpt")
    state.set_phone("timeout")
    register_callback(state, "vnpt", None)  # only the forged call back below
    created = api.post("/v1/requests", json={"credential_id": linked["vnpt"], "hashes": [
        {"hash": b64(hashlib.sha256(b"forged").digest()), "title": "UNC-CB3"}]})
    request_id = created.json()["request_id"]
    forged = {"sp_id": runtime.ca("vnpt").remote_signing().client_id, "status_code": 200, "message": "SUCCESS",
              "transaction_id": _transaction_of(runtime, request_id),
              "signed_files": [{"doc_id": "x", "signature_value": b64(bytes(256)), "timestamp_signature": None}]}
    assert httpx.post(callbacks["vnpt"], json=forged).status_code == 200
    done = _wait(api, request_id)
    assert done["state"] == "failed" and "provider_signature_invalid" in done["failure_reason"], done


def test_a_provider_answering_html_leaves_the_request_pending_and_audited(api: httpx.Client, runtime: Runtime,
                                                                          linked: dict[str, str],
                                                                          emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("viettel")
    created = api.post("/v1/requests", json={"credential_id": linked["viettel"], "hashes": [
        {"hash": b64(hashlib.sha256(b"html").digest()), "title": "UNC-H"}]})
    request_id = created.json()["request_id"]
    _transaction_of(runtime, request_id)
    state.reply_mode = "html"
    try:
        time.sleep(1.5)
        assert api.get(f"/v1/requests/{request_id}").json()["state"] == "pending"
        [event] = _audit(runtime, "request.provider_anomaly", target_id=request_id)
        assert event.details["kind"] == "provider_reply_malformed" and event.outcome == "refused"
    finally:
        state.reply_mode = "normal"
    assert _wait(api, request_id)["state"] == "signed"  # polling recovers once the provider answers again


def test_a_slow_provider_is_a_timeout_not_an_answer(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("vnpt")
    url = runtime.ca("vnpt").endpoints().signing_api_url or ""
    client = VnptClient(url, "x", "y", timeout=0.3)
    state.reply_mode, state.slow_seconds = "slow", 1.0
    try:
        with pytest.raises(httpx.TimeoutException):  # delegated.follow: pending, audited, asked again
            client.poll(RemoteCredential("u", "r", ()), "t")
    finally:
        state.reply_mode = "normal"
        client.close()


def test_a_linked_misa_account_keeps_signing_past_its_token_until_revoked(api: httpx.Client, runtime: Runtime,
                                                                          emulators: EmulatorSet) -> None:
    state = emulators.state("misa")
    state.token_ttl_seconds = 1.0
    try:
        credential_id = _link(runtime, emulators, "misa", "079177000123")
        with transaction(runtime.sessions) as s:
            first = s.get(Credential, credential_id).provider_ref["session"]  # type: ignore[union-attr]
        time.sleep(1.2)  # the 60-minute token (1 s here) is dead; no password is asked again
        created = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
            {"hash": b64(hashlib.sha256(b"past the hour").digest()), "title": "UNC-M"}]})
        assert _wait(api, created.json()["request_id"])["state"] == "signed"
        with transaction(runtime.sessions) as s:
            assert s.get(Credential, credential_id).provider_ref["session"] != first  # type: ignore[union-attr]
        assert _audit(runtime, "credential.session_renewed", target_id=credential_id)
        state.revoked_sessions.add("079177000123")  # the provider revokes: the next request fails clearly
        time.sleep(1.2)
        created = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
            {"hash": b64(hashlib.sha256(b"revoked").digest()), "title": "UNC-M2"}]})
        done = _wait(api, created.json()["request_id"])
        assert done["state"] == "failed" and "provider_session_revoked" in done["failure_reason"], done
    finally:
        state.token_ttl_seconds = 3600.0
