"""Hostile content over HTTP: text no database stores (a NUL for PostgreSQL, lone surrogates for
both) in bodies, URLs, cookies and client credentials, malformed PDFs and stamp templates; a clear
4xx, never a 500, and nothing stored.

Each database gets its own server (the ``stack`` fixture): PostgreSQL refuses text SQLite stores (a
NUL), so a fault may show on one only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest

from tests.api.conftest import Stack, sqlite_only

# -- text no database stores: NUL (PostgreSQL), lone surrogates (both) ----------------------------------------


NUL_BODIES = [
    ("/v1/requests", {"title": "UNC\x001"}),
    ("/v1/requests", {"summary": "100.000\x00 VND"}),
    ("/v1/requests", {"credential_id": "\x00"}),
    ("/v1/requests", {"title": "\ud800 lone"}),
    ("/v1/requests", {"summary": "low \udc00"}),
    ("/csc/v2/credentials/info", {"credentialID": "x\x00"}),
    ("/csc/v2/credentials/list", {"userID": "\x00"}),
    ("/csc/v2/credentials/authorize", {"credentialID": "x", "description": "\ud83d"}),
    ("/v1/devices/enroll", {"activation_code": "ABCD\x00EFGH", "public_key": "AAAA"}),
    ("/approve/api/login/options", {"username": "lan\x00"}),
]


@pytest.mark.parametrize("path, fields", NUL_BODIES)
def test_text_no_database_stores_is_refused(stack: Stack, path: str, fields: dict[str, str]) -> None:
    digest = base64.b64encode(hashlib.sha256(b"nul").digest()).decode()
    body: dict[str, object] = dict(fields)
    if path == "/v1/requests":
        hash_fields = {k: fields[k] for k in ("title", "summary") if k in fields}
        body = {"credential_id": fields.get("credential_id", stack.credential_id),
                "hashes": [{"hash": digest, "title": "UNC", **hash_fields}]}
    before = stack.requests_count()
    with stack.http(Origin=stack.origin, **{"Content-Type": "application/json"}) as api:
        answer = api.post(path, content=json.dumps(body))  # escaped: \u0000, \ud800
    error = answer.json().get("code", answer.json().get("error"))
    assert (answer.status_code, error) == (400, "invalid_request"), answer.text
    assert stack.requests_count() == before


def test_an_escaped_backslash_is_not_a_nul(stack: Stack) -> None:
    sqlite_only(stack)
    with stack.http(**{"Content-Type": "application/json"}) as api:
        # "\\u0000" is a backslash then "u0000": text, and the route's to judge.
        answer = api.post("/csc/v2/credentials/info", content=b'{"credentialID": "x\\\\u0000"}')
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    assert "no credential" in answer.json()["error_description"]


@pytest.mark.parametrize("target", [
    "/v1/requests/%00abc", "/v1/requests/abc?wait=1&x=%00", "/v1/credentials?user=lan%00",
    "/csc/v2/credentials/list?x=%00", "/approve/api/requests?wait=0&u=%00"])
def test_a_nul_in_the_url_is_refused(stack: Stack, target: str) -> None:
    with stack.http() as api:
        answer = api.get(target)
    assert answer.status_code == 400 and "NUL" in answer.text, answer.text


def test_a_nul_in_a_cookie_is_refused(stack: Stack) -> None:
    answer = httpx.get(f"{stack.url}/approve/api/requests", headers={"Cookie": 'kyso_session="ab\\000cd"'})
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request")


def test_the_token_endpoint_refuses_a_nul_in_client_credentials(stack: Stack) -> None:
    form = httpx.post(f"{stack.url}/oauth2/token", data={"grant_type": "client_credentials", "client_id": "a\x00b",
                                                          "client_secret": "s"})
    assert (form.status_code, form.json()["error"]) == (400, "invalid_request"), form.text
    scope = httpx.post(f"{stack.url}/oauth2/token", data={"grant_type": "client_credentials", "client_id": "a",
                                                           "client_secret": "s", "scope": "sign\x00"})
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_request"), scope.text
    basic = httpx.post(f"{stack.url}/oauth2/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": "Basic " + base64.b64encode(b"a\x00b:secret").decode()})
    assert (basic.status_code, basic.json()["error"]) == (401, "invalid_client"), basic.text


# -- documents: malformed PDFs and stamp templates ------------------------------------------------------------


def _upload(api: httpx.Client, data: bytes) -> str:
    uploaded = api.put("/v1/documents", content=data, headers={"Content-Type": "application/pdf"})
    assert uploaded.status_code == 201, uploaded.text
    return str(uploaded.json()["document_id"])


def test_a_malformed_pdf_is_unprocessable_not_a_server_error(stack: Stack) -> None:
    from tests.signer.test_malformed_pdf import MALFORMED

    before = stack.requests_count()
    work = stack.runtime.settings.blobs / "work"
    work_before = set(work.iterdir()) if work.exists() else set()
    with stack.http() as api:
        for name, data in MALFORMED.items():
            created = api.post("/v1/requests", json={"credential_id": stack.credential_id, "format": "pades",
                                                     "documents": [{"title": name, "document_id": _upload(api, data)}]})
            assert (created.status_code, created.json()["code"]) == (422, "invalid_document"), (name, created.text)
    assert stack.requests_count() == before
    assert (set(work.iterdir()) if work.exists() else set()) == work_before  # each refused request's work is gone


@pytest.mark.parametrize("stamp", ["%(signer)2000000s", "%d", "%(signer)s %s", "%(password)s", "x" * 201])
def test_a_stamp_is_only_the_documented_template(stack: Stack, stamp: str) -> None:
    sqlite_only(stack)
    from tests.signer.test_malformed_pdf import CATALOG, PAGE, PAGES, build_pdf

    started = time.monotonic()
    with stack.http() as api:
        created = api.post("/v1/requests", json={"credential_id": stack.credential_id, "format": "pades", "documents": [
            {"title": "UNC", "stamp": stamp, "document_id": _upload(api, build_pdf(CATALOG, PAGES, PAGE))}]})
    assert (created.status_code, created.json()["code"]) == (400, "invalid_stamp"), created.text
    assert time.monotonic() - started < 5
