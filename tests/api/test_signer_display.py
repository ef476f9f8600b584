"""What the signer approves is what is shown: text that displays as something else is refused on
every path, the PAdES options are shown and bound, and the reference device recomputes the binding
from what it shows and refuses a mismatch.
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
from biometrics.text import unsafe_character
from broker import clients, credentials
from broker.db.engine import transaction
from broker.db.models import AuditEvent, RequestItem, RequestState, SigningRequest
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso_client import KysoClient
from kyso_device.cli import app as device_app
from kyso_device.client import DeviceClient, DeviceState, RequestRefused, checked_binding
from tests.api.test_approval_page_browser import activation_code, browser  # noqa: F401 - a fixture
from tests.api.test_device_protocol import make_device
from tests.conftest import ACTOR, Enrolled

RS = "dvc-display"

# Bidi controls, zero-width and other format characters, C0/C1 controls, separators, fillers.
REFUSED = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
           "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\U000e0041",
           "\x00", "\x1b", "\t", "\r", "\x7f", "\x85", "\u2028", "\u2029", "\u3164", "\ue000"]
# A NUL is refused earlier, in any JSON body (invalid_request).
REFUSED_IN_JSON = [c for c in REFUSED if c != "\x00"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def token(runtime: Runtime, live_server: str, enrolled: Enrolled) -> str:
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, RS, ["U001"])
        client, secret = clients.add_client(s, ACTOR, RS)
    return KysoClient(live_server, client_id=client.client_id, client_secret=secret).access_token


@pytest.fixture(scope="module")
def api(live_server: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def phone(runtime: Runtime, live_server: str, enrolled: Enrolled) -> DeviceClient:
    return make_device(runtime, live_server, "lan")


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("display") / "order.pdf"
    write_payment_order_pdf(path)
    return b64(path.read_bytes())


def created_so_far(runtime: Runtime) -> tuple[int, int]:
    """Requests of this relying system, and request.create events that succeeded: neither moves on a refusal."""
    with transaction(runtime.sessions) as s:
        made = s.scalar(select(func.count()).select_from(SigningRequest).where(SigningRequest.relying_system == RS))
        audited = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "request.create", AuditEvent.outcome != "refused"))
        return made or 0, audited or 0


def last_refusal(runtime: Runtime) -> object:
    with transaction(runtime.sessions) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "request.create", AuditEvent.outcome == "refused")
                          .order_by(AuditEvent.id.desc()).limit(1)).first()
        return event.details.get("reason") if event else None


def cancel(runtime: Runtime, request_id: str) -> None:
    with transaction(runtime.sessions) as s:
        signing_requests.cancel(s, ACTOR, signing_requests.get(s, request_id))


def assert_invalid_text(response: httpx.Response, char: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_text", body
    assert f"U+{ord(char):04X}" in body["detail"]
    assert char not in response.text and len(body["detail"]) < 300  # names the character, never echoes it


# -- the text rule, and the binding's test vectors ------------------------------------------------------


@pytest.mark.parametrize("char", REFUSED)
def test_refused_characters(char: str) -> None:
    assert unsafe_character(f"000,000,1{char} VND") == (9, char)
    assert unsafe_character(f"a{char}", multiline=True) == (1, char)


def test_newline_only_where_multi_line_and_ordinary_text_passes() -> None:
    assert unsafe_character("Ủy nhiệm chi\nsố 7") == (12, "\n")
    assert unsafe_character("Ủy nhiệm chi\nsố 7", multiline=True) is None
    assert unsafe_character("Trả: Trường Nguyễn Trãi · 125.000.000 ₫ — «ok» 😀 ١٢٣ עברית") is None
    assert unsafe_character("Nguyễn") is None  # decomposed Vietnamese: combining marks are fine


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


# -- refusals on every path that opens a request --------------------------------------------------------


def raw_body(enrolled: Enrolled, title: str = "UNC-1", summary: str = "125.000.000 VND") -> dict[str, Any]:
    return {"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(hashlib.sha256(f"{time.time()}".encode()).digest()), "title": title, "summary": summary}]}


def file_body(enrolled: Enrolled, pdf: str, fmt: str, **document: Any) -> dict[str, Any]:
    content = pdf if fmt == "pades" else b64(b"<PaymentOrder/>")
    return {"credential_id": enrolled.rsa, "format": fmt,
            "documents": [{"title": "UNC-1", "content": content, **document}]}


@pytest.mark.parametrize("char", REFUSED_IN_JSON + ["\n"])
def test_raw_title_refused(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, char: str) -> None:
    before = created_so_far(runtime)
    assert_invalid_text(api.post("/v1/requests", json=raw_body(enrolled, title=f"UNC {char}000,000,1")), char)
    assert created_so_far(runtime) == before
    assert last_refusal(runtime) == "invalid_text"


@pytest.mark.parametrize("char", ["\u202e", "\u2067", "\u200b", "\x1b", "\r", "\t", "\u2028"])
def test_raw_summary_refused(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, char: str) -> None:
    before = created_so_far(runtime)
    assert_invalid_text(api.post("/v1/requests", json=raw_body(enrolled, summary=f"Số tiền: {char}000,000,1")), char)
    assert created_so_far(runtime) == before


def test_a_summary_may_have_lines(api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    created = api.post("/v1/requests", json=raw_body(enrolled, summary="Nhận: Việt Hưng\n125.000.000 VND"))
    assert created.status_code == 201, created.text
    cancel(runtime, created.json()["request_id"])


@pytest.mark.parametrize(("fmt", "field", "char"), [
    ("cades", "title", "\u202e"), ("cades", "summary", "\u2066"), ("cades", "summary", "\x9b"),
    ("pades", "title", "\u200f"), ("pades", "summary", "\u202d"),
    ("pades", "reason", "\u202e"), ("pades", "reason", "\n"), ("pades", "reason", "\u200b"),
    ("pades", "location", "\u2067"), ("pades", "location", "\x1b"),
    ("pades", "stamp", "\u202e"), ("pades", "stamp", "\ufeff"), ("pades", "stamp", "\r"),
    ("pades", "field", "\u202e"), ("pades", "field", "\n"),
])
def test_document_texts_refused(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, pdf: str, fmt: str,
                                field: str, char: str) -> None:
    before = created_so_far(runtime)
    work = runtime.settings.blobs / "work"
    work_before = set(work.iterdir()) if work.exists() else set()
    value = f"Ký{char}1" if field != "field" else f"Sig{char}1"
    assert_invalid_text(api.post("/v1/requests", json=file_body(enrolled, pdf, fmt, **{field: value})), char)
    assert created_so_far(runtime) == before
    assert last_refusal(runtime) == "invalid_text"
    assert (set(work.iterdir()) if work.exists() else set()) <= work_before  # no work file left behind


def test_csc_authorize_description_refused(live_server: str, token: str, runtime: Runtime, enrolled: Enrolled) -> None:
    before = created_so_far(runtime)
    for char in ("\u202e", "\u2068", "\u200b", "\x1b", "\n"):
        response = httpx.post(f"{live_server}/csc/v2/credentials/authorize", headers={"Authorization": f"Bearer {token}"},
                              json={"credentialID": enrolled.rsa, "description": f"UNC {char}000,000,1",
                                    "hashes": [b64(hashlib.sha256(b"csc").digest())]}, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_text"
        assert f"U+{ord(char):04X}" in response.json()["error_description"] and char not in response.text
    assert created_so_far(runtime) == before


def test_service_refuses_bad_options(runtime: Runtime, enrolled: Enrolled) -> None:
    """Every caller of the service is held to the same rule (the CLI's local signing, future formats)."""
    digest = hashlib.sha256(b"options").digest()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"reason": "a\u202eb"}, "invalid_text"), ({"stamp_text": "a\x1bb"}, "invalid_text"),
        ({"certify": "yes"}, "invalid_input"), ({"colour": "x"}, "invalid_input"),
        ({"reason": "x" * 256}, "invalid_input"),
    ]
    for options, code in cases:
        with transaction(runtime.sessions) as s, pytest.raises(signing_requests.InvalidInput) as refused:
            credential = credentials.get_credential(s, enrolled.rsa)
            signing_requests.create(s, runtime.settings, ACTOR, credential, [signing_requests.DocumentToSign(digest, "UNC", "", options)],
                            relying_system=RS, provider=runtime.ca(credential.provider))
        assert refused.value.code == code, options


# -- the options are shown and bound; the device recomputes ----------------------------------------------


PADES_OPTIONS = {"field": CHIEF_ACCOUNTANT_FIELD, "certify": True, "reason": "Kế toán trưởng ký <b>duyệt</b>",
                 "location": "Hà Nội", "stamp": "KẾ TOÁN TRƯỞNG\n%(signer)s"}
SHOWN = {"field_name": CHIEF_ACCOUNTANT_FIELD, "certify": True, "reason": "Kế toán trưởng ký <b>duyệt</b>",
         "location": "Hà Nội", "stamp_text": "KẾ TOÁN TRƯỞNG\n%(signer)s"}


def pending_one(device: DeviceClient, request_id: str) -> dict[str, Any]:
    found = [r for r in device.pending() if r["request_id"] == request_id]
    assert len(found) == 1
    return found[0]


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
        cancel(runtime, other.json()["request_id"])
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
    cancel(runtime, request_id)


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
    cancel(runtime, request_id)
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
    cancel(runtime, request_id)
