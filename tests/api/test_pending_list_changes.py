"""A phone showing a request is not answered again until its list changes: the pending list has an
ETag, and a long poll with If-None-Match waits for a different list (304 if none came in time)."""

from __future__ import annotations

import threading
import time

import httpx

from biometrics import Decision
from broker import approvals
from broker.db.engine import transaction
from broker.runtime import Runtime
from kyso_device.client import DeviceClient
from tests.conftest import ACTOR, Enrolled
from tests.support import make_device, new_request, pending_one


def _get(live_server: str, token: str, wait: float, tag: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **({"If-None-Match": tag} if tag else {})}
    return httpx.get(f"{live_server}/v1/devices/me/requests", params={"wait": wait}, headers=headers, timeout=30)


def test_a_long_poll_with_the_list_s_etag_waits_for_a_change(runtime: Runtime, enrolled: Enrolled,
                                                              live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():  # start from an empty list for this user
        device.decide(r, Decision.REFUSE)
    token = device.state.device_token
    first = new_request(runtime, enrolled.ec)
    shown = _get(live_server, token, 0)
    tag = shown.headers["ETag"]
    assert shown.status_code == 200 and [r["request_id"] for r in shown.json()["requests"]] == [first]

    started = time.monotonic()
    unchanged = _get(live_server, token, 1.5, tag)  # the same list: no answer before the wait ends
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == tag and not unchanged.content
    assert time.monotonic() - started >= 1.4

    answered: list[httpx.Response] = []
    poller = threading.Thread(target=lambda: answered.append(_get(live_server, token, 20, tag)))
    poller.start()
    time.sleep(0.5)
    second = new_request(runtime, enrolled.ec)
    runtime.notifier.notify()
    poller.join(timeout=30)
    changed = answered[0]
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    assert [r["request_id"] for r in changed.json()["requests"]] == [first, second]
    assert time.monotonic() - started < 15


def test_without_an_etag_the_list_is_answered_at_once_and_an_empty_one_waits(runtime: Runtime, enrolled: Enrolled,
                                                                              live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():
        device.decide(r, Decision.REFUSE)
    token = device.state.device_token
    started = time.monotonic()
    empty = _get(live_server, token, 1.0)
    assert empty.status_code == 200 and empty.json()["requests"] == [] and time.monotonic() - started >= 0.9
    new_request(runtime, enrolled.ec)
    started = time.monotonic()
    assert len(_get(live_server, token, 10).json()["requests"]) == 1 and time.monotonic() - started < 1
    assert len(_get(live_server, token, 10, 'W/"something-else"').json()["requests"]) == 1


def test_the_device_client_asks_for_changes_only(runtime: Runtime, enrolled: Enrolled, live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():
        device.decide(r, Decision.REFUSE)
    request_id = new_request(runtime, enrolled.ec)
    assert [r["request_id"] for r in device.pending(changed_only=True)] == [request_id]
    started = time.monotonic()
    assert device.pending(wait=1, changed_only=True) == []  # unchanged: 304 after the wait
    assert time.monotonic() - started >= 0.9
    assert [r["request_id"] for r in device.pending()] == [request_id]  # a plain call still lists it


def test_a_device_revoked_during_the_long_poll_gets_no_list(runtime: Runtime, enrolled: Enrolled,
                                                             live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():
        device.decide(r, Decision.REFUSE)
    answered: list[httpx.Response] = []
    poller = threading.Thread(target=lambda: answered.append(_get(live_server, device.state.device_token, 20)))
    poller.start()
    time.sleep(0.5)
    with transaction(runtime.sessions) as session:
        approvals.revoke_device(session, ACTOR, "hung", device.state.device_id)
    new_request(runtime, enrolled.ec)
    runtime.notifier.notify()
    poller.join(timeout=30)
    assert answered[0].status_code in (401, 403) and "requests" not in answered[0].text


def test_a_hostile_if_none_match_is_a_clear_4xx(runtime: Runtime, enrolled: Enrolled, live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    token = device.state.device_token
    oversized = _get(live_server, token, 0, 'W/"' + "a" * 500 + '"')
    assert oversized.status_code in (400, 422) and oversized.json()["code"]
    for odd in ('W/"\u202e1234"', "*", 'W/""'):  # any other tag is just not the list's: answered at once
        answered = httpx.get(f"{live_server}/v1/devices/me/requests", params={"wait": 0},
                             headers={"Authorization": f"Bearer {token}", "If-None-Match": odd.encode()})
        assert answered.status_code in (200, 304)


def test_the_list_is_every_pending_request_with_its_hashes_in_order(runtime: Runtime, enrolled: Enrolled,
                                                                     live_server: str) -> None:
    """Read in one statement of requests joined with their items: each request whole, its hashes in
    position order, requests oldest first, exactly as the requests themselves hold them."""
    from api.views import pending_view
    from broker.db.engine import read_transaction
    from broker.lifecycle import signing_requests

    device = make_device(runtime, live_server, "hung")
    for r in device.pending():
        device.decide(r, Decision.REFUSE)
    made = [new_request(runtime, enrolled.ec, n) for n in (3, 1, 5)]
    shown = _get(live_server, device.state.device_token, 0).json()["requests"]
    assert [r["request_id"] for r in shown] == made
    assert [[d["position"] for d in r["documents"]] for r in shown] == [[0, 1, 2], [0], [0, 1, 2, 3, 4]]
    with read_transaction(runtime.sessions) as session:
        user_id = signing_requests.get(session, made[0]).user_id
        expected = [pending_view(r).model_dump(mode="json")
                    for r in signing_requests.pending_for_user(session, user_id)]
    assert shown == expected


def _fresh_phone(runtime: Runtime, live_server: str) -> tuple[DeviceClient, str]:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():
        device.decide(r, Decision.REFUSE)
    return device, device.state.device_token


def test_a_phone_s_list_is_answered_when_a_request_in_it_expires(runtime: Runtime, enrolled: Enrolled,
                                                                 live_server: str) -> None:
    _, token = _fresh_phone(runtime, live_server)
    staying = new_request(runtime, enrolled.ec)
    expiring = new_request(runtime, enrolled.ec, ttl=2)
    shown = _get(live_server, token, 0)
    assert [r["request_id"] for r in shown.json()["requests"]] == [staying, expiring]
    started = time.monotonic()
    changed = _get(live_server, token, 20, shown.headers["ETag"])
    assert [r["request_id"] for r in changed.json()["requests"]] == [staying]
    assert time.monotonic() - started < 3.5  # at its expiry, not at the next re-check


def test_a_decision_on_another_device_answers_the_phone_s_long_poll(runtime: Runtime, enrolled: Enrolled,
                                                                   live_server: str) -> None:
    phone, token = _fresh_phone(runtime, live_server)
    other = make_device(runtime, live_server, "hung")
    request_id = new_request(runtime, enrolled.ec)
    tag = _get(live_server, token, 0).headers["ETag"]
    answered: list[tuple[httpx.Response, float]] = []

    def poll() -> None:
        started = time.monotonic()
        answered.append((_get(live_server, token, 20, tag), time.monotonic() - started))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    other.decide(pending_one(other, request_id), Decision.REFUSE)
    poller.join(timeout=30)
    [(changed, waited)] = answered
    assert changed.status_code == 200 and changed.json()["requests"] == [] and waited < 2  # its 1-second re-check
    assert phone.pending() == []
