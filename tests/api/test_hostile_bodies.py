"""Hostile requests over HTTP: bodies bounded and read only once the caller is known, long or deeply
nested input, out-of-range numbers; a clear 4xx, never a 500, and a fault of kyso's own is logged.

Each database gets its own server (the ``stack`` fixture).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from biometrics import Decision, sign_decision
from broker import clients
from broker.db.models import RequestState
from kyso_device.client import checked_binding
from tests.api.conftest import Stack, sqlite_only
from tests.support import state_of

MiB = 1024 * 1024


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
