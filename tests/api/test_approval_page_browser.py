"""The approval page in headless Debian chromium, with a virtual authenticator over CDP."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from broker import credentials
from broker.db.engine import transaction
from broker.db.models import RequestState, WebAuthnCredential
from broker.lifecycle import signing_requests, sole_control
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled
from tests.support import activation_code, in_ci, state_of

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        if in_ci():
            pytest.fail("chromium is missing (make test installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, live_server: str, *, user_verified: bool = True):  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": user_verified, "automaticPresenceSimulation": True}})
    page.goto(live_server.replace("127.0.0.1", "localhost") + "/approve")
    return page


def new_request(runtime: Runtime, credential_id: str, title: str) -> tuple[str, str]:
    doc = signing_requests.DocumentToSign(hashlib.sha256(f"{title}{time.time()}".encode()).digest(), title,
                                  "Đơn vị nhận: Công ty Việt Hưng · 125.000.000 VND")
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, credential_id)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential, [doc], relying_system="dvc-portal",
                                  provider=runtime.ca(credential.provider))
        return request.id, request.verification_code


def authenticators(runtime: Runtime) -> int:
    with transaction(runtime.sessions) as s:
        return s.scalar(select(func.count()).select_from(WebAuthnCredential)) or 0


def test_register_sign_in_approve_and_refuse(browser, runtime: Runtime, live_server: str,  # type: ignore[no-untyped-def]
                                             enrolled: Enrolled) -> None:
    request_id, code = new_request(runtime, enrolled.ec, "Ủy nhiệm chi UNC-001")
    page = open_page(browser, live_server)
    page.fill("#code", activation_code(runtime, "hung"))
    page.click("#register")
    page.wait_for_selector("#inbox:not(.hidden)", timeout=20000)
    card = page.locator(f'[data-request-id="{request_id}"]')
    card.wait_for(timeout=20000)
    assert card.locator(".code").inner_text() == code
    assert "Ủy nhiệm chi UNC-001" in card.inner_text()
    card.locator(".approve").click()
    page.locator("#message.ok", has_text="Approved").wait_for(timeout=20000)
    assert state_of(runtime, request_id) is RequestState.APPROVED
    with transaction(runtime.sessions) as s:
        evidence = signing_requests.get(s, request_id).evidence
    assert evidence and evidence["kind"] == "webauthn" and "assertion" in evidence
    assert len(sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)) == 1

    # The session survives a reload; sign out, sign in again with the same authenticator, refuse with one tap.
    refused_id, _ = new_request(runtime, enrolled.ec, "Ủy nhiệm chi UNC-002")
    page.reload()
    page.wait_for_selector("#inbox:not(.hidden)", timeout=20000)
    page.click("#logout")
    page.wait_for_selector("#signin:not(.hidden)", timeout=20000)
    page.fill("#username", "hung")
    page.click("#login")
    card = page.locator(f'[data-request-id="{refused_id}"]')
    card.wait_for(timeout=20000)
    card.locator(".refuse").click()
    page.locator("#message.ok", has_text="Refused").wait_for(timeout=20000)
    assert state_of(runtime, refused_id) is RequestState.REJECTED
    page.context.close()


def test_an_authenticator_without_user_verification_is_refused(browser, runtime: Runtime, live_server: str,  # type: ignore[no-untyped-def]
                                                              enrolled: Enrolled) -> None:
    before = authenticators(runtime)
    page = open_page(browser, live_server, user_verified=False)
    page.fill("#code", activation_code(runtime, "lan"))
    page.click("#register")
    page.wait_for_selector("#message.error", timeout=20000)
    assert authenticators(runtime) == before
    assert page.locator("#inbox").get_attribute("class") == "hidden"
    page.context.close()
