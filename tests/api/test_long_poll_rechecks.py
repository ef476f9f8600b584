"""A REST long poll waiting on a pending request is woken by the request's notifications and by its
expiry; between them it does not query the database every second (idle long polls are the DVC's
normal state while a signer has not looked at the phone yet)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update

from broker.db.engine import transaction
from broker.db.models import SigningRequest
from broker.lifecycle.signing_requests import now
from broker.runtime import Runtime
from tests.conftest import Enrolled
from tests.support import b64, bearer_http, relying_system_client


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str) -> Iterator[httpx.Client]:
    """No phone answers in this module: requests stay pending."""
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-long-polls")) as http:
        yield http


@contextmanager
def statements_run(runtime: Runtime, starting: str) -> Iterator[list[str]]:
    """The statements starting with ``starting`` that ``runtime``'s engine runs meanwhile."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(starting):
            seen.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)


def pending_request(api: httpx.Client, enrolled: Enrolled) -> str:
    created = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "cades",
                                             "documents": [{"content": b64(b"<UNC>long poll</UNC>"), "title": "UNC"}]})
    assert created.status_code == 201, created.text
    return str(created.json()["request_id"])


def test_an_idle_long_poll_does_not_query_every_second(api: httpx.Client, runtime: Runtime,
                                                       enrolled: Enrolled) -> None:
    request_id = pending_request(api, enrolled)
    try:
        with statements_run(runtime, "SELECT signing_requests.state, signing_requests.expires_at") as reads:
            started = time.monotonic()
            answer = api.get(f"/v1/requests/{request_id}", params={"wait": 4})
            waited = time.monotonic() - started
        assert answer.json()["state"] == "pending" and waited >= 3.9
        assert len(reads) == 2  # as it starts waiting and as the wait ends; a re-check each second made it 5
    finally:
        api.post(f"/v1/requests/{request_id}/cancel")


def test_a_long_poll_is_answered_at_its_request_s_expiry(api: httpx.Client, runtime: Runtime,
                                                         enrolled: Enrolled) -> None:
    request_id = pending_request(api, enrolled)
    with transaction(runtime.sessions) as s:
        s.execute(update(SigningRequest).where(SigningRequest.id == request_id)
                  .values(expires_at=now() + timedelta(seconds=1.5)))
    started = time.monotonic()
    answer = api.get(f"/v1/requests/{request_id}", params={"wait": 20})
    assert answer.json()["state"] == "expired"
    assert time.monotonic() - started < 3  # at the expiry, not at the next re-check


def test_a_long_poll_is_woken_by_its_request_s_change(api: httpx.Client, runtime: Runtime,
                                                      enrolled: Enrolled) -> None:
    request_id = pending_request(api, enrolled)
    answers: list[tuple[str, float]] = []

    def poll() -> None:
        started = time.monotonic()
        state = api.get(f"/v1/requests/{request_id}", params={"wait": 20}).json()["state"]
        answers.append((state, time.monotonic() - started))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    assert api.post(f"/v1/requests/{request_id}/cancel").status_code in (200, 204)
    poller.join(10)
    [(state, waited)] = answers
    assert state == "cancelled" and waited < 2
