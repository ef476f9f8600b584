"""Delegated credentials, the providers' side: VNPT, Viettel and MISA call kyso back (idempotent,
authenticated, refusals audited), polling at each provider's documented cadence is the fallback, and
a provider's malformed, slow or forged answers or a revoked session end or hold the request clearly.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, ProviderCallback, SigningRequest
from broker.runtime import Runtime
from ca_adapters.emulator.provider_apis.vnpt import vnpt_callback_body
from ca_adapters.emulator.server import EmulatorSet, register_callback
from ca_adapters.emulator.state import CallbackTarget
from ca_adapters.remote_clients.vnpt import VnptClient
from ca_adapters.remote_signing import RemoteCredential
from tests.conftest import Enrolled
from tests.support import b64, bearer_http, link_delegated, relying_system_client, wait_done


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-delegated-callbacks"), timeout=60) as http:
        yield http


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


def _callback_status(runtime: Runtime, request_id: str) -> str | None:
    """The recorded call back's status. On a loaded machine the first poll may find the request signed
    before the provider's call back lands; the call back is still recorded, a moment later."""
    status = None
    for _ in range(100):
        with transaction(runtime.sessions) as s:
            status = s.scalar(select(ProviderCallback.status).where(ProviderCallback.request_id == request_id))
        if status is not None:
            break
        time.sleep(0.05)
    return status


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
    done = wait_done(api, request_id, wait=10)
    assert done["state"] == "signed", done
    assert time.monotonic() - started < cadence  # the first poll said pending; the call back did the rest
    assert _callback_status(runtime, request_id) == "SUCCESS"
    [event] = _audit(runtime, "provider.callback", target_id=request_id)
    assert event.outcome == "ok" and event.actor.startswith(f"provider:{provider}@")


def test_callbacks_are_idempotent_and_refusals_audited(api: httpx.Client, runtime: Runtime, linked: dict[str, str],
                                                       callbacks: dict[str, str], emulator_reset: EmulatorSet,
                                                       live_server: str) -> None:
    state = emulator_reset.state("vnpt")
    created = api.post("/v1/requests", json={"credential_id": linked["vnpt"], "hashes": [
        {"hash": b64(hashlib.sha256(b"idempotent").digest()), "title": "UNC-CB2"}]})
    request_id = created.json()["request_id"]
    assert wait_done(api, request_id, wait=10)["state"] == "signed"
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
    done = wait_done(api, request_id, wait=10)
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
    assert wait_done(api, request_id, wait=10)["state"] == "signed"  # polling recovers once the provider answers again


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
        credential_id = link_delegated(runtime, emulators, "misa", "079177000123")
        with transaction(runtime.sessions) as s:
            first = s.get(Credential, credential_id).provider_ref["session"]  # type: ignore[union-attr]
        time.sleep(1.2)  # the 60-minute token (1 s here) is dead; no password is asked again
        created = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
            {"hash": b64(hashlib.sha256(b"past the hour").digest()), "title": "UNC-M"}]})
        assert wait_done(api, created.json()["request_id"], wait=10)["state"] == "signed"
        with transaction(runtime.sessions) as s:
            assert s.get(Credential, credential_id).provider_ref["session"] != first  # type: ignore[union-attr]
        assert _audit(runtime, "credential.session_renewed", target_id=credential_id)
        state.revoked_sessions.add("079177000123")  # the provider revokes: the next request fails clearly
        time.sleep(1.2)
        created = api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
            {"hash": b64(hashlib.sha256(b"revoked").digest()), "title": "UNC-M2"}]})
        done = wait_done(api, created.json()["request_id"], wait=10)
        assert done["state"] == "failed" and "provider_session_revoked" in done["failure_reason"], done
    finally:
        state.token_ttl_seconds = 3600.0
