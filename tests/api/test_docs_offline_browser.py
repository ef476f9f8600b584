"""``/docs`` and ``/redoc`` in headless Debian chromium with no internet: every request stays on kyso's origin."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api.test_approval_page_browser import browser  # noqa: F401 - the module's chromium fixture

pytestmark = pytest.mark.browser

# Screenshots to look at: KYSO_SCREENSHOTS_DIR when set, else a temporary folder (never demo-out/, the demo's results).
SHOTS = Path(os.environ.get("KYSO_SCREENSHOTS_DIR") or tempfile.gettempdir()) / "kyso-screenshots"


def _load(browser, url: str, ready: str, shot: str) -> list[str]:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    # Anything off kyso's origin is what a treasury intranet cannot reach: refuse it, as its firewall would.
    origin = urlsplit(url).netloc
    context.route("**/*", lambda route: route.continue_() if urlsplit(route.request.url).netloc == origin
                  or route.request.url.startswith("data:") else route.abort())
    page.goto(url)
    page.wait_for_selector(ready, timeout=20000)
    page.wait_for_load_state("networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot), full_page=False)
    context.close()
    return requested


def test_swagger_ui_renders_offline(browser, live_server: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    requested = _load(browser, f"{live_server}/docs", ".opblock-tag-section", "docs-swagger.png")
    origin = urlsplit(live_server).netloc
    foreign = [u for u in requested if not u.startswith("data:") and urlsplit(u).netloc != origin]
    assert not foreign, foreign
    assert any(u.endswith("/openapi.json") for u in requested)


def test_swagger_shows_authorize_and_operations(browser, live_server: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{live_server}/docs")
    page.wait_for_selector(".opblock-tag-section", timeout=20000)
    assert page.locator("button.authorize").count() == 1
    assert page.locator(".opblock-summary-path", has_text="/v1/requests").count() >= 1
    context.close()


def test_redoc_renders_offline(browser, live_server: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    requested = _load(browser, f"{live_server}/redoc", "h1", "docs-redoc.png")
    origin = urlsplit(live_server).netloc
    foreign = [u for u in requested if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != origin]
    assert any(u.endswith("/static/docs/redoc.standalone.js") for u in requested)
    assert not foreign, foreign
