"""Hostile input over HTTP: bounded bodies read only once authenticated, and a clear 4xx, never a 500.

Each database gets its own server: PostgreSQL refuses text SQLite stores (a NUL), so a fault may
show on one only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import func, text
from sqlalchemy import select as sql_select

from api.app import create_app
from biometrics import Decision, sign_decision
from broker import clients, credentials, directory
from broker.db.engine import make_engine, transaction
from broker.db.migrate import upgrade
from broker.db.models import RequestState, Role, SigningMode, SigningRequest
from broker.runtime import Runtime
from broker.settings import Settings
from hsm import Hsm, KeyAlgorithm
from kyso_client import KysoClient
from kyso_device.client import DeviceClient, checked_binding
from tests.api.test_authenticator_lifecycle import SoftAuthenticator, register
from tests.api.test_device_protocol import make_device, new_request, state_of
from tests.conftest import ACTOR, _free_port, _postgres_url

MiB = 1024 * 1024


@dataclass
class Stack:
    """A server over one database, with a relying system's token, a signer, her phone and her browser session."""

    kind: str
    runtime: Runtime
    url: str
    token: str
    credential_id: str
    username: str
    device: DeviceClient
    session_cookie: str

    @property
    def origin(self) -> str:
        return self.url.replace("127.0.0.1", "localhost")

    def http(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}", **headers})

    @cached_property
    def pending_request(self) -> str:
        return new_request(self.runtime, self.credential_id, n=1)

    def requests_count(self) -> int:
        with transaction(self.runtime.sessions) as s:
            return int(s.scalar(sql_select(func.count()).select_from(SigningRequest)) or 0)


def _database(kind: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'kyso.db'}"
    url = _postgres_url()
    if not url:
        pytest.skip("KYSO_TEST_DATABASE_URL not set")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, settings: Settings,
          hsm: Hsm) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    url = _database(request.param, tmp)
    upgrade(url)
    port = _free_port()
    public = f"http://localhost:{port}"
    rt = Runtime(settings.model_copy(update={
        "database_url": url, "audit_anchors_file": tmp / "anchors.jsonl", "public_base_url": public,
        "webauthn_origins": [public], "webauthn_rp_id": "localhost"}), hsm=hsm)
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    username = f"mallory{uuid.uuid4().hex[:6]}"
    with transaction(rt.sessions) as s:
        directory.add_unit(s, ACTOR, "H001", "Trường Mầm non Thử", SigningMode.REMOTE)
        directory.add_user(s, ACTOR, username=username, unit_code="H001", full_name="Lê Văn Thử",
                           national_id="001190000789", role=Role.CHIEF_ACCOUNTANT)
    with transaction(rt.sessions) as s:
        credential = credentials.enroll(s, ACTOR, rt.hsm, rt.ca("viettel"), username=username,
                                        key_algorithm=KeyAlgorithm.EC_P256)
        credential_id = credential.id
    with transaction(rt.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-hostile", ["H001"])
        client, secret = clients.add_client(s, ACTOR, "dvc-hostile")
    token = KysoClient(base, client_id=client.client_id, client_secret=secret).access_token
    device = make_device(rt, base, username)
    with httpx.Client(base_url=base, headers={"Origin": public}, timeout=30) as browser:
        from tests.api.test_authenticator_lifecycle import activation_code

        registered = register(browser, SoftAuthenticator(public), activation_code(rt, username))
        assert registered.status_code == 200, registered.text
        cookie = browser.cookies["kyso_session"]
    yield Stack(request.param, rt, base, token, credential_id, username, device, cookie)
    server.should_exit = True
    thread.join(timeout=10)
    rt.engine.dispose()


def sqlite_only(stack: Stack) -> None:
    if stack.kind != "sqlite":
        pytest.skip("not database-specific: checked once, on SQLite")


# -- bodies: bounded, and read only once the caller is known ----------------------------------------------


def raw_exchange(url: str, head: str, chunks: Iterator[bytes] = iter(()), budget: float = 20) -> tuple[int, bytes, int]:
    """Send ``head`` then ``chunks`` until the server answers; its status, its body and the body bytes sent."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=budget) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # it answered before the body was all sent
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        data = b""
        deadline = time.monotonic() + budget
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            assert time.monotonic() < deadline, "no answer"
            try:
                more = sock.recv(65536)
            except ConnectionResetError:
                break
            if not more:
                break
            data += more
    head_part, _, body = data.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), body, sent


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _head(path: str, length: int | None, token: str | None = None) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\r\n".join(lines) + "\r\n\r\n"


def _chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    piece = b"[" * size
    for _ in range(total // size):
        yield f"{size:x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("path, token, status, code", [
    ("/v1/requests", None, 401, "invalid_token"),  # authentication first: a stranger's body is never read
    ("/v1/requests", "made-up-token", 401, "invalid_token"),
    ("/v1/requests", "valid", 413, "body_too_large"),
    ("/v1/devices/enroll", None, 413, "body_too_large"),  # a public route: the bound alone
    ("/v1/devices/me/requests/x/decision", None, 403, "device_not_active"),
    ("/csc/v2/credentials/list", None, 401, "invalid_token"),
    ("/csc/v2/signatures/signHash", "valid", 413, "invalid_request"),
    ("/oauth2/token", None, 413, "invalid_request"),
    ("/approve/api/login/options", None, 413, "body_too_large"),
])
def test_an_oversized_body_is_refused_before_it_is_sent(stack: Stack, path: str, token: str | None, status: int,
                                                         code: str) -> None:
    sqlite_only(stack)
    started = time.monotonic()
    # 150 MB declared, none of it sent: the answer comes at once, so nothing was waited for or read.
    answered, body, _ = raw_exchange(stack.url, _head(path, 150_000_000, stack.token if token == "valid" else token),
                                     budget=5)
    document = json.loads(body)
    assert answered == status and code in (document.get("code"), document.get("error")), body
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("path, token", [("/v1/devices/enroll", None), ("/csc/v2/credentials/list", "valid"),
                                         ("/v1/requests", "valid")])
def test_a_chunked_body_is_counted_as_it_arrives(stack: Stack, path: str, token: str | None) -> None:
    sqlite_only(stack)
    answered, body, sent = raw_exchange(stack.url, _head(path, None, stack.token if token else None),
                                        _chunked(150 * MiB))
    assert answered == 413, body
    assert sent < 32 * MiB  # refused after about the bound (and what the sockets buffer), not after 150 MB


def test_a_chunked_body_from_a_stranger_is_not_read(stack: Stack) -> None:
    sqlite_only(stack)
    answered, body, sent = raw_exchange(stack.url, _head("/v1/requests", None), _chunked(150 * MiB))
    assert answered == 401 and json.loads(body)["code"] == "invalid_token"
    assert sent < 32 * MiB


def test_a_body_within_the_bound_still_works(stack: Stack) -> None:
    sqlite_only(stack)
    digest = base64.b64encode(hashlib.sha256(b"ok").digest()).decode()
    with stack.http() as api:
        created = api.post("/v1/requests", json={"credential_id": stack.credential_id, "hashes": [
            {"hash": digest, "title": "UNC 1", "summary": "x" * 1999}]})
        assert created.status_code == 201, created.text
        api.post(f"/v1/requests/{created.json()['request_id']}/cancel")


def test_long_input_is_quoted_only_briefly(stack: Stack) -> None:
    sqlite_only(stack)
    long = "A" * 900_000
    digest = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    with stack.http() as api:
        unknown = api.post("/v1/requests", json={"credential_id": long, "hashes": [{"hash": digest, "title": "t"}]})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
        invalid = api.post("/v1/requests", json={"credential_id": stack.credential_id,
                                                 "hashes": [{"hash": digest, "title": long}]})
        assert (invalid.status_code, invalid.json()["code"]) == (400, "invalid_request")
        keyed = api.post("/v1/requests", json={"credential_id": stack.credential_id, "format": long})
        csc = api.post("/csc/v2/credentials/info", json={"credentialID": long})
        assert (csc.status_code, csc.json()["error"]) == (400, "invalid_request")
    for answer in (unknown, invalid, keyed, csc):
        assert answer.status_code < 500 and len(answer.content) < 600 and "A" * 241 not in answer.text


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_invalid_request(stack: Stack, depth: int) -> None:
    sqlite_only(stack)
    nested = "[" * depth + "]" * depth
    with stack.http(**{"Content-Type": "application/json"}) as api:
        for path, error_key in [("/csc/v2/credentials/list", "error"), ("/csc/v1/credentials/info", "error"),
                                ("/v1/requests", "code"), ("/v1/devices/enroll", "code")]:
            # Under a name no route reads: only the bound refuses it.
            answer = api.post(path, content=f'{{"credentialID": "x", "extra": {nested}}}')
            assert (answer.status_code, answer.json()[error_key]) == (400, "invalid_request"), (path, answer.text)
        # A nesting well within the bound is the route's to judge, as before.
        shallow = api.post("/csc/v2/credentials/list", content='{"x": [[[["deep enough"]]]]}')
        assert shallow.status_code == 200, shallow.text


@pytest.mark.parametrize("wait", ["nan", "NaN", "inf", "-inf", "-1", "1e400", "100000"])
def test_a_long_poll_wait_is_a_finite_bounded_number(stack: Stack, wait: str) -> None:
    sqlite_only(stack)
    with stack.http() as api:
        rest = api.get(f"/v1/requests/{stack.pending_request}", params={"wait": wait})
        phone = httpx.get(f"{stack.url}/v1/devices/me/requests", params={"wait": wait},
                          headers={"Authorization": f"Bearer {stack.device.state.device_token}"})
        page = httpx.get(f"{stack.url}/approve/api/requests", params={"wait": wait},
                         cookies={"kyso_session": stack.session_cookie})
    for answer in (rest, phone, page):
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request"), answer.text


def test_a_device_counter_beyond_64_bits_is_invalid_request(stack: Stack) -> None:
    request_id = stack.pending_request
    [shown] = [r for r in stack.device.pending() if r["request_id"] == request_id]
    key = stack.device.state.private_key()
    for counter in (2**63, 2**64 + 1):
        signature = sign_decision(key, checked_binding(shown), Decision.APPROVE, counter) if counter < 2**64 \
            else b"not a signature"
        answer = httpx.post(f"{stack.url}/v1/devices/me/requests/{request_id}/decision",
                            headers={"Authorization": f"Bearer {stack.device.state.device_token}"},
                            json={"decision": "approve", "counter": counter,
                                  "signature": base64.b64encode(signature).decode()})
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request"), answer.text
    assert state_of(stack.runtime, request_id) is RequestState.PENDING  # nothing decided, nothing stored


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


def test_a_csc_server_error_is_logged_not_swallowed(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    sqlite_only(stack)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a fault of kyso's own")

    # A stand-in for a fault still unknown: the caller learns nothing, the log has the trace.
    monkeypatch.setattr(clients, "visible_credentials", broken)
    with caplog.at_level(logging.ERROR, logger="kyso.csc"), stack.http() as api:
        answer = api.post("/csc/v2/credentials/list", json={})
    assert (answer.status_code, answer.json()["error"]) == (500, "server_error")
    assert "fault of kyso" not in answer.text
    [record] = [r for r in caplog.records if r.name == "kyso.csc"]
    assert record.exc_info is not None and "fault of kyso" in str(record.exc_info[1])
