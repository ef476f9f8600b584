"""What the signer approves is what is shown: the PAdES options are shown and bound (the binding's
test vectors), the reference device recomputes the binding from what it shows and refuses a
mismatch, and the approval page shows the options as text.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from biometrics import Decision
from biometrics.binding import BindingInput, BoundDocument, canonical_json, compute_binding, verification_code
from broker import credentials
from broker.db.engine import transaction
from broker.db.models import AuditEvent, RequestItem, RequestState
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD
from kyso_device.cli import app as device_app
from kyso_device.client import DeviceClient, DeviceState, RequestRefused, checked_binding
from tests.api.test_approval_page_browser import browser  # noqa: F401 - a fixture
from tests.conftest import ACTOR, Enrolled
from tests.support import (
    activation_code,
    b64,
    bearer_http,
    cancel_request,
    file_body,
    pending_one,
    relying_system_client,
)

RS = "dvc-display-options"


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, RS), timeout=60) as http:
        yield http


# -- the binding's test vectors -------------------------------------------------------------------------


VECTOR_DOCS = [
    BoundDocument(hashlib.sha256(b"UNC-7").digest(), "Ủy nhiệm chi UNC-7", "Nhận: Công ty Việt Hưng\n125.000.000 VND",
                  {"field_name": "KeToanTruong", "certify": True, "reason": "Kế toán trưởng ký", "location": "Hà Nội",
                   "stamp_text": "KẾ TOÁN TRƯỞNG\n%(signer)s"}),
    BoundDocument(hashlib.sha256(b"raw").digest(), "Bảng kê", ""),
]
VECTOR_JSON = (
    '{"credential_id":"cred-1","documents":[{"hash":"da78e1640863c32bb381767b3d72532c1cdb333127a2d9e1d9ccc401bb9ec09f",'
    '"hash_algorithm":"sha256","options":{"certify":true,"field_name":"KeToanTruong","location":"Hà Nội",'
    '"reason":"Kế toán trưởng ký","stamp_text":"KẾ TOÁN TRƯỞNG\\n%(signer)s"},'
    '"summary":"Nhận: Công ty Việt Hưng\\n125.000.000 VND","title":"Ủy nhiệm chi UNC-7"},'
    '{"hash":"d7439bee24773bcbfa2d0a97947ee36227b10d1022b1a55847e928965bb6bfde","hash_algorithm":"sha256",'
    '"summary":"","title":"Bảng kê"}],"expires_at":"2025-03-01T08:30:00Z","nonce":"n0nce","relying_system":"dvc",'
    '"request_id":"3f1c0d7e9a","v":"kyso-binding-v1"}'
)


def vector(documents: list[BoundDocument]) -> BindingInput:
    return BindingInput("3f1c0d7e9a", "cred-1", "dvc", "sha256", documents,
                        datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc), "n0nce")


def test_binding_vector_with_options() -> None:
    value = vector(VECTOR_DOCS)
    assert canonical_json(value).decode() == VECTOR_JSON
    assert compute_binding(value).hex() == "7e82d6c3a384e8a2b66b74353bcc364b4b4543e2a3da86d7606404ceeb3f793e"
    assert verification_code(compute_binding(value)) == "3875"


def test_a_binding_without_options_is_unchanged() -> None:
    """No options: no ``options`` key, so the binding is the one computed before options existed."""
    plain = vector([VECTOR_DOCS[1]])
    assert compute_binding(plain).hex() == "884ac1159a0bf21ed3b5c682408f009563bd0c8f3f63138f904a689194c12c02"
    empty = vector([BoundDocument(VECTOR_DOCS[1].digest, "Bảng kê", "", {})])
    assert compute_binding(empty) == compute_binding(plain)
    assert b'"options"' not in canonical_json(plain)


# -- the options are shown and bound; the device recomputes ----------------------------------------------


PADES_OPTIONS = {"field": CHIEF_ACCOUNTANT_FIELD, "certify": True, "reason": "Kế toán trưởng ký <b>duyệt</b>",
                 "location": "Hà Nội", "stamp": "KẾ TOÁN TRƯỞNG\n%(signer)s"}
SHOWN = {"field_name": CHIEF_ACCOUNTANT_FIELD, "certify": True, "reason": "Kế toán trưởng ký <b>duyệt</b>",
         "location": "Hà Nội", "stamp_text": "KẾ TOÁN TRƯỞNG\n%(signer)s"}


def test_pades_options_are_shown_and_bound(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, pdf: str,
                                           phone: DeviceClient, tmp_path: Path) -> None:
    created = api.post("/v1/requests", json=file_body(enrolled, pdf, "pades", **PADES_OPTIONS))
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    shown = pending_one(phone, request_id)
    assert shown["documents"][0]["options"] == SHOWN
    binding = base64.b64decode(shown["binding"])
    assert checked_binding(shown) == binding
    # The server's binding covers the options: without them (or with another reason) it is another binding.
    with transaction(runtime.sessions) as s:
        request = signing_requests.get(s, request_id)
        item = request.items[0]
        bound = BindingInput(request.id, request.credential_id, request.relying_system, request.hash_algorithm,
                             [BoundDocument(item.digest, item.title, item.summary, SHOWN)], request.expires_at,
                             request.nonce)
        assert compute_binding(bound) == request.binding == binding
        unbound = BindingInput(request.id, request.credential_id, request.relying_system, request.hash_algorithm,
                               [BoundDocument(item.digest, item.title, item.summary)], request.expires_at,
                               request.nonce)
        assert compute_binding(unbound) != binding
    # Omitted texts are left out; certify and the field are always there.
    plain = api.post("/v1/requests", json=file_body(enrolled, pdf, "pades", reason=""))
    assert plain.status_code == 201, plain.text
    assert pending_one(phone, plain.json()["request_id"])["documents"][0]["options"] == {
        "field_name": "Signature1", "certify": False}
    # Raw and CAdES have none.
    cades = api.post("/v1/requests", json=file_body(enrolled, pdf, "cades", reason="ignored"))
    assert cades.status_code == 201, cades.text
    assert pending_one(phone, cades.json()["request_id"])["documents"][0]["options"] == {}
    for other in (plain, cades):
        cancel_request(runtime, other.json()["request_id"])
    phone.state.save(tmp_path / "phone.json")  # the reference device lists them too
    listed = CliRunner().invoke(device_app, ["list", "--state", str(tmp_path / "phone.json")])
    assert listed.exit_code == 0 and "REFUSED" not in listed.output
    assert "certifies the document (later changes: only form filling and signing): yes" in listed.output
    assert "reason: Kế toán trưởng ký <b>duyệt</b>" in listed.output and "location: Hà Nội" in listed.output
    assert phone.decide(shown, Decision.APPROVE)["state"] == "approved"


def raw_request(runtime: Runtime, enrolled: Enrolled, n: int = 2) -> str:
    docs = [signing_requests.DocumentToSign(hashlib.sha256(f"tamper {i} {time.time()}".encode()).digest(), f"UNC-{i}",
                                    "Nhận: Việt Hưng\n125.000.000 VND") for i in range(n)]
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.rsa)
        return signing_requests.create(s, runtime.settings, ACTOR, credential, docs, relying_system=RS,
                               provider=runtime.ca(credential.provider)).id


def _tamper(shown: dict[str, Any], how: str) -> dict[str, Any]:
    t = copy.deepcopy(shown)
    docs = t["documents"]
    if how == "title":
        docs[0]["title"] = "UNC-9"
    elif how == "summary":
        docs[0]["summary"] = "Nhận: Việt Hưng\n1.250.000.000 VND"
    elif how == "hash":
        docs[0]["hash"] = "00" * 32
    elif how == "order":
        docs[0]["position"], docs[1]["position"] = 1, 0
    elif how == "options":
        docs[0]["options"] = {"field_name": "Signature1", "certify": True}
    elif how == "expiry":
        t["expires_at"] = "2099-01-01T00:00:00Z"
    elif how == "binding":
        t["binding"] = b64(bytes(32))
    elif how == "code":
        t["verification_code"] = f"{(int(t['verification_code']) + 1) % 10000:04d}"
    elif how == "rtl":
        docs[0]["summary"] = "\u202e000,000,1"
    elif how == "missing":
        del t["nonce"]
    else:
        t[how] = "x" + t[how]
    return t


@pytest.mark.parametrize(("how", "code"), [
    *[(h, "binding_mismatch") for h in ("title", "summary", "hash", "order", "options", "expiry", "binding", "code",
                                         "relying_system", "credential_id", "hash_algorithm", "nonce", "request_id")],
    ("rtl", "invalid_text"), ("missing", "malformed_request"),
])
def test_the_device_refuses_what_the_binding_does_not_cover(runtime: Runtime, enrolled: Enrolled, phone: DeviceClient,
                                                            how: str, code: str) -> None:
    request_id = raw_request(runtime, enrolled)
    shown = pending_one(phone, request_id)
    assert checked_binding(shown) == base64.b64decode(shown["binding"])
    counter = phone.state.counter
    with pytest.raises(RequestRefused) as refused:
        phone.decide(_tamper(shown, how), Decision.APPROVE)
    assert refused.value.code == code
    assert phone.state.counter == counter  # nothing signed
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.PENDING
        assert not s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.target_id == request_id, AuditEvent.outcome == "refused"))  # nothing sent
    cancel_request(runtime, request_id)


def test_the_reference_device_cli_refuses_a_server_that_shows_other_text(runtime: Runtime, live_server: str,
                                                                         enrolled: Enrolled, phone: DeviceClient,
                                                                         tmp_path: Path) -> None:
    state = tmp_path / "phone.json"
    phone.state.save(state)
    request_id = raw_request(runtime, enrolled, n=1)
    with transaction(runtime.sessions) as s:  # what a compromised server would do: show something else
        s.execute(update(RequestItem).where(RequestItem.request_id == request_id).values(summary="Nhận: Việt Hưng\n1 VND"))
    cli = CliRunner()
    listed = cli.invoke(device_app, ["list", "--state", str(state)])
    assert "REFUSED [binding_mismatch]" in listed.output
    before = json.loads(state.read_text())["counter"]
    approved = cli.invoke(device_app, ["approve", request_id, "--state", str(state)])
    assert approved.exit_code == 2
    assert "binding_mismatch" in approved.output
    assert json.loads(state.read_text())["counter"] == before
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.PENDING
    cancel_request(runtime, request_id)
    phone.state = DeviceState.load(state)


# -- the approval page shows the options (as text) ------------------------------------------------------


@pytest.mark.browser
def test_the_approval_page_shows_the_options(browser, runtime: Runtime, live_server: str, api: httpx.Client,  # type: ignore[no-untyped-def]
                                             enrolled: Enrolled, pdf: str, tmp_path: Path) -> None:
    body = file_body(enrolled, pdf, "pades", **PADES_OPTIONS)
    body["credential_id"] = enrolled.ec
    created = api.post("/v1/requests", json=body)
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.goto(live_server.replace("127.0.0.1", "localhost") + "/approve")
    page.fill("#code", activation_code(runtime, "hung"))
    page.click("#register")
    card = page.locator(f'[data-request-id="{request_id}"]')
    card.wait_for(timeout=20000)
    options = card.locator("dl.options")
    assert options.locator('dd[data-option="reason"]').inner_text() == SHOWN["reason"]  # as text, not markup
    assert options.locator("b").count() == 0
    assert options.locator('dd[data-option="location"]').inner_text() == "Hà Nội"
    assert options.locator('dd[data-option="stamp_text"]').inner_text() == "KẾ TOÁN TRƯỞNG\n%(signer)s"
    assert options.locator('dd[data-option="field_name"]').inner_text() == CHIEF_ACCOUNTANT_FIELD
    assert "Yes" in options.locator('dd[data-option="certify"]').inner_text()
    assert "Certifies the document" in options.inner_text()
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "approve-options.png"), full_page=True)
    context.close()
    cancel_request(runtime, request_id)
