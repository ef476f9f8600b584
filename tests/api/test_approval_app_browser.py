"""The approval app in headless Debian chromium, at a phone's size and a desktop's, with a virtual
platform authenticator: installable, live, what is signed shown, history, a session that lasts.

Each screen is written as a PNG under the test's tmp dir (and KYSO_SCREENSHOTS_DIR when set).
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from api import approval_app
from broker import approvals, credentials, directory
from broker.db.engine import transaction
from broker.db.models import RequestState, Role, SigningRequest
from broker.lifecycle import signing_requests
from broker.lifecycle.clock import now
from broker.lifecycle.payload import RequestPayload
from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD
from hsm import KeyAlgorithm
from tests.api.test_approval_page_browser import browser  # noqa: F401 - a fixture
from tests.api.test_authenticator_lifecycle import SoftAuthenticator, page_origin, register
from tests.conftest import ACTOR, Enrolled
from tests.signer.test_xades import ORDER
from tests.support import activation_code, b64, bearer_http, relying_system_client, state_of

pytestmark = pytest.mark.browser

RS, RS_NAME = "dvc-app", "Cổng DVC Kho bạc"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
PADES = {"field": CHIEF_ACCOUNTANT_FIELD, "reason": "Kế toán trưởng duyệt chi", "location": "Hà Nội",
         "stamp": "KẾ TOÁN TRƯỞNG\n%(signer)s"}


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    """A relying system with a display name, and its client's API."""
    client = relying_system_client(runtime, RS, (enrolled.unit,), display_name=RS_NAME)
    with bearer_http(live_server, *client, timeout=60) as http:
        yield http


class Screens:
    """Screenshots of each screen, named by viewport and step."""

    def __init__(self, folder: Path, viewport: str) -> None:
        self.folders = [folder] + ([Path(os.environ["KYSO_SCREENSHOTS_DIR"])]
                                   if os.environ.get("KYSO_SCREENSHOTS_DIR") else [])
        self.viewport, self.n = viewport, 0

    def shot(self, page: Any, name: str, *, full_page: bool = False) -> None:
        self.n += 1
        if full_page:  # a sticky header would be drawn where the page was scrolled to
            page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)  # let the last render settle (images decode, timers tick)
        for folder in self.folders:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{self.viewport}-{self.n:02d}-{name}.png"), full_page=full_page)


def new_signer(runtime: Runtime, enrolled: Enrolled) -> tuple[str, str]:
    username = f"app{uuid.uuid4().hex[:8]}"
    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username=username, unit_code=enrolled.unit, full_name="Phạm Thị Duyệt",
                           national_id=str(uuid.uuid4().int)[:12], role=Role.CHIEF_ACCOUNTANT)
    with transaction(runtime.sessions) as s:
        credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("vnpt"), username=username,
                                        key_algorithm=KeyAlgorithm.EC_P256)
        return username, credential.id


def open_app(browser, live_server: str, viewport: str):  # type: ignore[no-untyped-def]
    phone = viewport == "phone"
    context = browser.new_context(locale="en-US", viewport=VIEWPORTS[viewport], device_scale_factor=2 if phone else 1,
                                  is_mobile=phone, has_touch=phone)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    page.goto(page_origin(live_server) + "/approve")
    return page, cdp


def submit(api: httpx.Client, credential_id: str, document: dict[str, Any], fmt: str) -> str:
    answer = api.post("/v1/requests", json={"credential_id": credential_id, "format": fmt, "documents": [document]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["request_id"])


def hash_request(runtime: Runtime, credential_id: str, title: str, expires_in: float | None = None) -> str:
    doc = signing_requests.DocumentToSign(hashlib.sha256(f"{title}{time.time()}".encode()).digest(), title, "1.000 VND")
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, credential_id)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential, [doc], relying_system=RS,
                                          provider=runtime.ca(credential.provider))
        request_id = request.id
        if expires_in is not None:
            s.execute(update(SigningRequest).where(SigningRequest.id == request_id)
                      .values(expires_at=now() + timedelta(seconds=expires_in)))
    runtime.notifier.notify(f"u:{request.user_id}")
    return request_id


def wait_for_state(runtime: Runtime, request_id: str, wanted: RequestState, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while state_of(runtime, request_id) is not wanted:
        assert time.monotonic() < deadline, f"{request_id} is {state_of(runtime, request_id)}, not {wanted}"
        time.sleep(0.2)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_approval_app(browser, runtime: Runtime, live_server: str, enrolled: Enrolled,  # type: ignore[no-untyped-def]  # noqa: F811
                          api: httpx.Client, pdf: str, tmp_path: Path, viewport: str) -> None:
    screens = Screens(tmp_path / "screens", viewport)
    username, credential_id = new_signer(runtime, enrolled)
    page, cdp = open_app(browser, live_server, viewport)
    origin = page_origin(live_server)

    # -- installable: a valid manifest with its icons, a service worker over /approve --------------------------
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["errors"] == [], manifest["errors"]
    parsed = page.request.get(origin + "/approve/manifest.webmanifest").json()
    assert parsed["start_url"] == "/approve" and parsed["display"] == "standalone" and parsed["scope"] == "/approve"
    for entry in parsed["icons"]:
        icon = page.request.get(origin + entry["src"])
        assert icon.status == 200 and icon.headers["content-type"] == "image/png"
        assert png_size(icon.body()) == tuple(int(n) for n in entry["sizes"].split("x"))
    scope = page.evaluate("navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == origin + "/approve"
    installability = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert not [e for e in installability if "manifest" in e["errorId"] or "icon" in e["errorId"]], installability
    screens.shot(page, "sign-in")

    # -- register with the platform authenticator; the inbox is live ---------------------------------------------
    page.fill("#code", activation_code(runtime, username))
    page.click("#register")
    page.wait_for_selector("#inbox:not(.hidden)", timeout=20000)
    page.locator("#empty").wait_for(timeout=10000)
    page.wait_for_timeout(500)  # the long poll is waiting now
    screens.shot(page, "inbox-empty")

    started = time.monotonic()
    pdf_id = submit(api, credential_id, {"title": "Giấy rút dự toán UNC-2026-000123", "content": pdf,
                                          "summary": "Công ty Việt Hưng · 125.000.000 VND", **PADES}, "pades")
    card = page.locator(f'#requests [data-request-id="{pdf_id}"]')
    card.wait_for(timeout=10000)
    arrival = time.monotonic() - started
    assert arrival < 5, f"the request took {arrival:.1f} s to appear"  # within a second, and slack for a busy machine
    assert card.locator(".rs").inner_text() == RS_NAME
    with transaction(runtime.sessions) as s:
        request = signing_requests.get(s, pdf_id)
        code, serial = request.verification_code, request.credential.serial_hex
        payload = RequestPayload.of(request)
    assert card.locator(".code").inner_text() == code
    assert card.locator(".serial").inner_text() == serial
    assert "Phạm Thị Duyệt" in card.locator(".holder").inner_text()
    assert card.locator(".timer").inner_text().startswith("Time left")
    assert card.locator('[data-option="reason"]').inner_text() == PADES["reason"]
    # The pages, rendered on the server, and the signature field marked on the first.
    image = card.locator(".page img").first
    image.wait_for(timeout=30000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30000)
    mark = card.locator(".page .mark").first
    assert mark.is_visible()
    assert "KẾ TOÁN TRƯỞNG\nPhạm Thị Duyệt" in mark.inner_text()  # the stamp as it will read
    box, frame = mark.bounding_box(), card.locator(".page").first.bounding_box()
    assert box and frame and box["y"] > frame["y"] + frame["height"] * 0.4  # the field is below the order's text
    cached = list((payload.work / "preview").rglob("*"))  # type: ignore[operator]
    assert any(p.name == "page-1.png" for p in cached)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached if p.is_file())
    image_url = image.get_attribute("src")
    assert "no-store" in page.request.get(origin + image_url).headers["cache-control"]
    screens.shot(page, "request-pdf")
    mark.scroll_into_view_if_needed()
    screens.shot(page, "request-pdf-page")

    # An XML document: the signed element and the start of its text.
    xml_id = submit(api, credential_id, {"title": "Chứng từ XML UNC-2026-000124", "content":
                                         b64(ORDER), "reference_id": "data",
                                         "placement": "/Hoso/CKy_Dvi"}, "xades")
    xml_card = page.locator(f'#requests [data-request-id="{xml_id}"]')
    xml_card.wait_for(timeout=10000)
    shown = xml_card.locator("dl.shown").inner_text()
    assert "DLieu" in shown and "UNC-2026-000123" in shown
    xml_card.scroll_into_view_if_needed()
    screens.shot(page, "request-xml")

    # Decided elsewhere: the card goes. Expired: the card stays and says so.
    cancelled_id = hash_request(runtime, credential_id, "UNC hủy")
    page.locator(f'#requests [data-request-id="{cancelled_id}"]').wait_for(timeout=10000)
    with transaction(runtime.sessions) as s:  # the relying system cancels it
        signing_requests.cancel(s, ACTOR, signing_requests.get(s, cancelled_id))
    page.locator(f'#requests [data-request-id="{cancelled_id}"]').wait_for(state="detached", timeout=5000)
    expiring_id = hash_request(runtime, credential_id, "UNC sắp hết hạn", expires_in=4)
    expiring = page.locator(f'#requests [data-request-id="{expiring_id}"]')
    expiring.wait_for(timeout=10000)
    page.locator(f'#requests [data-request-id="{expiring_id}"].expired').wait_for(timeout=15000)
    assert expiring.locator(".timer").inner_text() == "Expired"
    assert expiring.locator(".approve").is_hidden()
    expiring.scroll_into_view_if_needed()
    screens.shot(page, "request-expired")
    expiring.locator(".dismiss").click()

    # Approve the PDF (user verification), refuse the XML.
    card.locator(".approve").click()
    page.locator("#message.ok", has_text="Approved").wait_for(timeout=20000)
    xml_card.locator(".refuse").click()
    page.locator("#message.ok", has_text="Refused").wait_for(timeout=20000)
    assert state_of(runtime, xml_id) is RequestState.REJECTED
    wait_for_state(runtime, pdf_id, RequestState.SIGNED)
    page.locator("#empty").wait_for(timeout=10000)

    # -- notifications while in the background ---------------------------------------------------------------------
    page.context.grant_permissions(["notifications"], origin=origin)
    page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})")
    background_id = hash_request(runtime, credential_id, "UNC khi ẩn")
    page.locator(f'#requests [data-request-id="{background_id}"]').wait_for(timeout=10000)
    deadline = time.monotonic() + 10
    while True:  # shown right after the card, asynchronously
        titles = page.evaluate("navigator.serviceWorker.ready.then((r) => r.getNotifications())"
                               ".then((list) => list.map((n) => n.title + '|' + n.tag))")
        if f"New signing request|{background_id}" in titles or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert f"New signing request|{background_id}" in titles
    page.evaluate("delete document.hidden")

    # -- history: states, the signed document, its verdict ----------------------------------------------------------
    page.click('nav [data-tab="history"]')
    signed = page.locator(f'#entries [data-request-id="{pdf_id}"]')
    signed.wait_for(timeout=10000)
    assert signed.locator(".state").inner_text() == "Signed"
    states = {e.get_attribute("data-request-id"): e.get_attribute("data-state")
              for e in page.locator("#entries .entry").all()}
    assert {states[xml_id], states[cancelled_id], states[background_id]} == {"rejected", "cancelled", "pending"}
    assert states[expiring_id] == "expired"
    download = page.request.get(origin + signed.locator("a.download").get_attribute("href"))
    assert download.status == 200 and download.body().startswith(b"%PDF-")
    signed.locator("button.check").click()
    verdict = signed.locator(".verdict")
    page.wait_for_function("el => /TOTAL_|INDETERMINATE|NONE/.test(el.className)", arg=verdict.element_handle(),
                           timeout=60000)
    # A B-B signature without revocation data, validated from what it embeds: TRY_LATER, said so.
    assert verdict.inner_text().split(" — ")[0] in ("Signature valid", "Indeterminate")
    screens.shot(page, "history", full_page=viewport == "phone")

    # -- the session: survives a reload, listed with another one, which is ended here -------------------------------
    page.reload()
    page.wait_for_selector("#inbox:not(.hidden)", timeout=20000)
    assert page.locator("#signin").is_hidden()
    cookie = next(c for c in page.context.cookies() if c["name"] == "kyso_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/approve"
    assert cookie["expires"] > time.time() + runtime.settings.web_session_seconds - 120
    other = SoftAuthenticator(origin)
    with httpx.Client(base_url=live_server, headers={"Origin": origin, "User-Agent": "Other phone"}, timeout=30) as second:
        assert register(second, other, activation_code(runtime, username), "second phone").status_code == 200
        assert second.get("/approve/api/me").status_code == 200
        page.click('nav [data-tab="sessions"]')
        listed = page.locator("#sessionList .session")
        page.wait_for_function("() => document.querySelectorAll('#sessionList .session').length === 2", timeout=10000)
        assert listed.filter(has_text="This session").count() == 1
        screens.shot(page, "sessions")
        listed.filter(has_text="second phone").locator("button.end").click()
        page.wait_for_function("() => document.querySelectorAll('#sessionList .session').length === 1", timeout=10000)
        assert second.get("/approve/api/me").status_code == 401

    # -- logout ends the session ---------------------------------------------------------------------------------------
    page.click("#logout")
    page.wait_for_selector("#signin:not(.hidden)", timeout=10000)
    assert page.request.get(origin + "/approve/api/me").status == 401
    page.reload()
    page.wait_for_selector("#signin:not(.hidden)", timeout=10000)
    assert page.locator("#inbox").is_hidden()
    screens.shot(page, "signed-out")

    # -- a revoked authenticator: its open session ends, and it signs in no more ---------------------------------------
    page.fill("#username", username)
    page.click("#login")
    page.wait_for_selector("#inbox:not(.hidden)", timeout=20000)
    with transaction(runtime.sessions) as s:
        mine = [a for a in approvals.list_authenticators(s, username) if a.kind == "webauthn" and a.name != "second phone"]
        approvals.revoke_device(s, ACTOR, username, mine[0].id)
    page.wait_for_selector("#signin:not(.hidden)", timeout=40000)  # the next poll is answered 401
    page.fill("#username", username)
    page.click("#login")
    page.locator("#message.error").wait_for(timeout=20000)
    assert page.locator("#inbox").is_hidden()
    screens.shot(page, "revoked")
    page.context.close()


def test_the_apps_calls_are_guarded(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    """Its POSTs refuse another origin; its reads need a session; the page's policy allows its worker and manifest."""
    for path in approval_app.route_paths():
        answer = httpx.post(live_server + path.replace("{session_id}", "x"), headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403 and answer.json()["code"] == "origin_refused"
    for path in ("/approve/api/me", "/approve/api/inbox", "/approve/api/history", "/approve/api/sessions",
                 "/approve/api/requests/x/documents/0/preview", "/approve/api/history/x/documents/0"):
        answer = httpx.get(live_server + path)
        assert answer.status_code == 401 and answer.json()["code"] == "not_signed_in", path
    policy = httpx.get(live_server + "/approve").headers["content-security-policy"]
    assert "worker-src 'self'" in policy and "manifest-src 'self'" in policy and "unsafe" not in policy
    worker = httpx.get(live_server + "/approve/sw.js")
    assert worker.headers["service-worker-allowed"] == "/approve"
    assert "/approve/api" not in worker.text.split("ASSETS = [")[1].split("]")[0]  # the API is never cached


def test_another_signers_request_answers_as_missing(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    _, credential_id = new_signer(runtime, enrolled)
    stranger, _ = new_signer(runtime, enrolled)
    theirs = hash_request(runtime, credential_id, "UNC của người khác")
    origin = page_origin(live_server)
    with httpx.Client(base_url=live_server, headers={"Origin": origin}, timeout=30) as client:
        assert register(client, SoftAuthenticator(origin), activation_code(runtime, stranger)).status_code == 200
        for path in (f"/approve/api/requests/{theirs}/documents/0/preview", f"/approve/api/history/{theirs}/documents/0",
                     f"/approve/api/history/{theirs}/documents/0/verdict"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["code"] == "not_found", path
        assert theirs not in client.get("/approve/api/history").text
