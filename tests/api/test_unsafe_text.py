"""Text that displays as something else is refused on every path that opens a request (REST raw and
file requests, CSC authorize, the service itself), named but never echoed, and nothing is created.
"""

from __future__ import annotations

import hashlib
import random
import time
import unicodedata
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from biometrics import text
from biometrics.text import unsafe_character
from broker import credentials
from broker.db.engine import transaction
from broker.db.models import AuditEvent, SigningRequest
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled
from tests.support import access_token, b64, cancel_request, file_body, relying_system_client

RS = "dvc-display"

# Bidi controls, zero-width and other format characters, C0/C1 controls, separators, fillers.
REFUSED = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
           "\u200f", "\u061c", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\U000e0041",
           "\x00", "\x1b", "\t", "\r", "\x7f", "\x85", "\u2028", "\u2029", "\u3164", "\ue000"]
# A NUL is refused earlier, in any JSON body (invalid_request).
REFUSED_IN_JSON = [c for c in REFUSED if c != "\x00"]


@pytest.fixture(scope="module")
def token(runtime: Runtime, live_server: str, enrolled: Enrolled) -> str:
    return access_token(live_server, *relying_system_client(runtime, RS))


@pytest.fixture(scope="module")
def api(live_server: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield http


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


def assert_invalid_text(response: httpx.Response, char: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_text", body
    assert f"U+{ord(char):04X}" in body["detail"]
    assert char not in response.text and len(body["detail"]) < 300  # names the character, never echoes it


# -- the text rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", REFUSED)
def test_refused_characters(char: str) -> None:
    assert unsafe_character(f"000,000,1{char} VND") == (9, char)
    assert unsafe_character(f"a{char}", multiline=True) == (1, char)


def test_newline_only_where_multi_line_and_ordinary_text_passes() -> None:
    assert unsafe_character("Ủy nhiệm chi\nsố 7") == (12, "\n")
    assert unsafe_character("Ủy nhiệm chi\nsố 7", multiline=True) is None
    assert unsafe_character("Trả: Trường Nguyễn Trãi · 125.000.000 ₫ — «ok» 😀 ١٢٣ עברית") is None
    assert unsafe_character("Nguyễn") is None  # decomposed Vietnamese: combining marks are fine


# -- refusals on every path that opens a request --------------------------------------------------------


def raw_body(enrolled: Enrolled, title: str = "UNC-1", summary: str = "125.000.000 VND") -> dict[str, Any]:
    return {"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(hashlib.sha256(f"{time.time()}".encode()).digest()), "title": title, "summary": summary}]}


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
    cancel_request(runtime, created.json()["request_id"])


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


def test_the_fast_path_judges_like_the_rule_character_by_character() -> None:
    """Plain text is passed at C speed (str.isprintable); random text of every plane gets the same
    verdict as the per-character rule."""
    def by_character(value: str, multiline: bool) -> tuple[int, str] | None:
        for index, char in enumerate(value):
            if char == "\n" and multiline:
                continue
            if char in text.BIDI_CONTROLS or char in text.INVISIBLE or \
                    unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
                return index, char
        return None

    rnd = random.Random(7)
    picks = (lambda: rnd.randrange(0x20, 0x7F), lambda: rnd.randrange(0xA0, 0x3000), lambda: rnd.randrange(0x110000),
             lambda: rnd.choice((0x20, 0x0A, 0xA0, 0x3164, 0x202E, 0x200B)))
    for _ in range(20000):
        value = "".join(chr(rnd.choice(picks)()) for _ in range(rnd.randrange(6)))
        for multiline in (False, True):
            assert text.unsafe_character(value, multiline=multiline) == by_character(value, multiline), repr(value)
