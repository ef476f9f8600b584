"""The phone protocol end to end over HTTP on loopback: good and refused approvals.

After each refused case nothing was signed (the authorisation cannot be used) and the audit log
says why.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from sqlalchemy import select, update

from biometrics import Decision, sign_decision
from biometrics.binding import BindingInput, BoundDocument, compute_binding
from broker import approvals, credentials
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, ItemState, RequestItem, RequestState
from broker.lifecycle import signing_requests, sole_control
from broker.runtime import Runtime
from kyso_device.client import DeviceApiError, DeviceClient, DeviceState, enroll
from tests.conftest import ACTOR, Enrolled, load_credential
from tests.support import make_device, new_request, pending_one, state_of


def refusals(runtime: Runtime, request_id: str) -> list[str]:
    with transaction(runtime.sessions) as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.target_id == request_id, AuditEvent.outcome == "refused"))
        return [str(e.details.get("reason")) for e in events]


def assert_nothing_signed(runtime: Runtime, request_id: str) -> None:
    with transaction(runtime.sessions) as s:
        items = s.scalars(select(RequestItem).where(RequestItem.request_id == request_id)).all()
        assert all(i.signature is None and i.state is not ItemState.CONSUMED for i in items)
    with pytest.raises(sole_control.NotAuthorised):
        sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)


@pytest.fixture(scope="module")
def lan_device(runtime: Runtime, live_server: str, enrolled: Enrolled) -> DeviceClient:
    return make_device(runtime, live_server, "lan")


@pytest.fixture(scope="module")
def hung_device(runtime: Runtime, live_server: str, enrolled: Enrolled) -> DeviceClient:
    return make_device(runtime, live_server, "hung")


@pytest.fixture()
def unlock(runtime: Runtime) -> Iterator[None]:
    yield
    with transaction(runtime.sessions) as s:
        s.execute(update(Credential).values(failed_confirmations=0, locked_until=None))


def test_good_approval_then_exactly_one_signing(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa, n=3)
    shown = pending_one(lan_device, request_id)
    with transaction(runtime.sessions) as s:
        assert shown["verification_code"] == signing_requests.get(s, request_id).verification_code
    assert [d["title"] for d in shown["documents"]] == [f"Ủy nhiệm chi số {i}" for i in range(3)]
    assert lan_device.decide(shown, Decision.APPROVE)["state"] == "approved"
    signatures = sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)
    assert state_of(runtime, request_id) is RequestState.SIGNED
    key = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.rsa))
    public = serialization.load_der_public_key(key.certificate.public_key.dump())
    for doc, sig in zip(shown["documents"], signatures):
        public.verify(sig, bytes.fromhex(doc["hash"]), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))  # type: ignore[union-attr]
    with pytest.raises(sole_control.NotAuthorised):  # single use
        sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)


def test_an_approval_of_other_hashes_is_refused(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa)
    pending_one(lan_device, request_id)
    with transaction(runtime.sessions) as s:
        request = signing_requests.get(s, request_id)
        tampered = compute_binding(BindingInput(
            request.id, request.credential_id, request.relying_system, request.hash_algorithm,
            [BoundDocument(bytes(32), i.title, i.summary) for i in request.items], request.expires_at, request.nonce))
    lan_device.state.counter += 1
    sig = sign_decision(lan_device.state.private_key(), tampered, Decision.APPROVE, lan_device.state.counter)
    response = httpx.post(f"{lan_device.state.base_url}/v1/devices/me/requests/{request_id}/decision",
                          headers={"Authorization": f"Bearer {lan_device.state.device_token}"},
                          json={"decision": "approve", "counter": lan_device.state.counter,
                                "signature": base64.b64encode(sig).decode()})
    assert response.status_code == 403
    assert response.json()["code"] == "confirmation_invalid"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert state_of(runtime, request_id) is RequestState.PENDING
    assert refusals(runtime, request_id) == ["confirmation_invalid"]
    assert_nothing_signed(runtime, request_id)


def test_a_device_with_another_key_is_refused(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa)
    shown = pending_one(lan_device, request_id)
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    pem = impostor_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    impostor = DeviceClient(DeviceState(lan_device.state.base_url, lan_device.state.device_id,
                                        lan_device.state.device_token, pem, lan_device.state.counter + 100, "lan"))
    with pytest.raises(DeviceApiError) as refused:
        impostor.decide(shown, Decision.APPROVE)
    assert refused.value.code == "confirmation_invalid"
    assert_nothing_signed(runtime, request_id)
    assert "confirmation_invalid" in refusals(runtime, request_id)


def test_another_users_device_sees_and_decides_nothing(runtime: Runtime, enrolled: Enrolled,
                                                       lan_device: DeviceClient, hung_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa)
    assert request_id not in [r["request_id"] for r in hung_device.pending()]
    shown = pending_one(lan_device, request_id)
    with pytest.raises(DeviceApiError) as refused:
        hung_device.decide(shown, Decision.APPROVE)
    assert refused.value.status == 404 and refused.value.code == "not_found"
    assert refusals(runtime, request_id) == ["not_found"]
    assert_nothing_signed(runtime, request_id)


def test_a_revoked_device_cannot_approve(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    device = make_device(runtime, live_server, "lan")
    request_id = new_request(runtime, enrolled.rsa)
    shown = pending_one(device, request_id)
    with transaction(runtime.sessions) as s:
        approvals.revoke_device(s, ACTOR, "lan", device.state.device_id)
    with pytest.raises(DeviceApiError) as refused:
        device.decide(shown, Decision.APPROVE)
    assert refused.value.code == "device_not_active"
    assert_nothing_signed(runtime, request_id)
    assert refusals(runtime, request_id) == ["device_not_active"]
    # nor see what waits for its signer any more, in a first look or with a list it already has
    for headers in ({}, {"If-None-Match": 'W/"0"'}):
        listed = httpx.get(f"{live_server}/v1/devices/me/requests",
                           headers={"Authorization": f"Bearer {device.state.device_token}", **headers})
        assert listed.status_code == 403 and listed.json()["code"] == "device_not_active"
        assert "requests" not in listed.json()


def test_replayed_approval_and_backward_counter(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    first = new_request(runtime, enrolled.rsa)
    shown = pending_one(lan_device, first)
    lan_device.state.counter += 1
    counter = lan_device.state.counter
    sig = base64.b64encode(sign_decision(lan_device.state.private_key(), base64.b64decode(shown["binding"]),
                                         Decision.APPROVE, counter)).decode()
    url = f"{lan_device.state.base_url}/v1/devices/me/requests/{first}/decision"
    headers = {"Authorization": f"Bearer {lan_device.state.device_token}"}
    body = {"decision": "approve", "counter": counter, "signature": sig}
    assert httpx.post(url, headers=headers, json=body).status_code == 200
    replay = httpx.post(url, headers=headers, json=body)
    assert replay.status_code == 409 and replay.json()["code"] == "request_not_pending"

    second = new_request(runtime, enrolled.rsa)
    shown2 = pending_one(lan_device, second)
    old = base64.b64encode(sign_decision(lan_device.state.private_key(), base64.b64decode(shown2["binding"]),
                                         Decision.APPROVE, counter - 1)).decode()
    backwards = httpx.post(f"{lan_device.state.base_url}/v1/devices/me/requests/{second}/decision", headers=headers,
                           json={"decision": "approve", "counter": counter - 1, "signature": old})
    assert backwards.status_code == 403 and backwards.json()["code"] == "confirmation_replayed"
    assert_nothing_signed(runtime, second)
    assert refusals(runtime, second) == ["confirmation_replayed"]


def test_an_expired_request_cannot_be_approved(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa, ttl=2)  # expires_at is rounded down: 1-2 s from now
    shown = pending_one(lan_device, request_id)
    time.sleep(2.2)
    with pytest.raises(DeviceApiError) as refused:
        lan_device.decide(shown, Decision.APPROVE)
    assert refused.value.status == 410 and refused.value.code == "request_expired"
    assert state_of(runtime, request_id) is RequestState.EXPIRED
    assert_nothing_signed(runtime, request_id)


def test_a_refusal_is_final(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa)
    shown = pending_one(lan_device, request_id)
    assert lan_device.decide(shown, Decision.REFUSE)["state"] == "rejected"
    with pytest.raises(DeviceApiError) as again:
        lan_device.decide(shown, Decision.APPROVE)
    assert again.value.code == "request_not_pending"
    assert_nothing_signed(runtime, request_id)


def test_two_concurrent_approvals_one_wins(runtime: Runtime, enrolled: Enrolled, lan_device: DeviceClient) -> None:
    request_id = new_request(runtime, enrolled.rsa)
    shown = pending_one(lan_device, request_id)
    binding = base64.b64decode(shown["binding"])
    base = lan_device.state.counter
    lan_device.state.counter += 2
    headers = {"Authorization": f"Bearer {lan_device.state.device_token}"}
    url = f"{lan_device.state.base_url}/v1/devices/me/requests/{request_id}/decision"
    bodies = [{"decision": "approve", "counter": base + k,
               "signature": base64.b64encode(sign_decision(lan_device.state.private_key(), binding, Decision.APPROVE,
                                                           base + k)).decode()} for k in (1, 2)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send(body: dict) -> None:  # type: ignore[type-arg]
        barrier.wait()
        statuses.append(httpx.post(url, headers=headers, json=body, timeout=30).status_code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses)[0] == 200 and statuses.count(200) == 1, statuses
    assert len(sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)) == 2


def test_failed_confirmations_lock_the_credential(runtime: Runtime, enrolled: Enrolled, hung_device: DeviceClient,
                                                  unlock: None) -> None:
    request_id = new_request(runtime, enrolled.rsa_pss)
    shown = pending_one(hung_device, request_id)
    headers = {"Authorization": f"Bearer {hung_device.state.device_token}"}
    url = f"{hung_device.state.base_url}/v1/devices/me/requests/{request_id}/decision"
    for _ in range(runtime.settings.confirm_max_failures):
        hung_device.state.counter += 1
        bad = {"decision": "approve", "counter": hung_device.state.counter,
               "signature": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()}
        assert httpx.post(url, headers=headers, json=bad).json()["code"] == "confirmation_invalid"
    with pytest.raises(DeviceApiError) as locked:
        hung_device.decide(shown, Decision.APPROVE)
    assert locked.value.code == "credential_locked"
    with pytest.raises(signing_requests.CredentialLocked):
        new_request(runtime, enrolled.rsa_pss)
    assert_nothing_signed(runtime, request_id)


def test_pending_limit_per_user(runtime: Runtime, enrolled: Enrolled, monkeypatch: pytest.MonkeyPatch) -> None:
    with transaction(runtime.sessions) as s:
        pending = len(signing_requests.pending_for_user(s, credentials.get_credential(s, enrolled.ec).user_id))
    monkeypatch.setattr(runtime.settings, "max_pending_per_user", pending + 1)
    new_request(runtime, enrolled.ec)
    with pytest.raises(signing_requests.TooManyPending) as limited:
        new_request(runtime, enrolled.ec)
    assert limited.value.code == "too_many_pending_requests"


def test_long_poll_wakes_when_a_request_arrives(runtime: Runtime, enrolled: Enrolled, live_server: str) -> None:
    device = make_device(runtime, live_server, "hung")
    for r in device.pending():  # start from an empty list for this user
        device.decide(r, Decision.REFUSE)
    result: list[list[dict]] = []  # type: ignore[type-arg]
    started = time.monotonic()
    poller = threading.Thread(target=lambda: result.append(device.pending(wait=20)))
    poller.start()
    time.sleep(0.5)
    request_id = new_request(runtime, enrolled.ec)
    runtime.notifier.notify()
    poller.join(timeout=30)
    assert [r["request_id"] for r in result[0]] == [request_id]
    assert time.monotonic() - started < 10


def test_bad_enrollment_and_tokens(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    with pytest.raises(DeviceApiError) as bad_code:
        enroll(live_server, "NOPE-NOPE-NOPE")
    assert bad_code.value.code == "activation_refused"
    with transaction(runtime.sessions) as s:
        code, _ = approvals.issue_activation_code(s, runtime.settings, ACTOR, "lan")
    enroll(live_server, code)
    with pytest.raises(DeviceApiError):  # one use only
        enroll(live_server, code)
    response = httpx.get(f"{live_server}/v1/devices/me/requests", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403 and response.json()["code"] == "device_not_active"
    assert httpx.get(f"{live_server}/v1/devices/me/requests").json()["code"] == "device_not_active"
    assert httpx.get(f"{live_server}/readyz").json()["ready"] is True


def test_two_concurrent_approvals_one_wins_on_each_database(db_runtime: Runtime) -> None:
    """The same race at the service level, on SQLite and on PostgreSQL."""
    from broker import directory
    from broker.db.models import Role, SigningMode
    from hsm import KeyAlgorithm

    with transaction(db_runtime.sessions) as s:
        directory.add_unit(s, ACTOR, "R1", "Race unit", SigningMode.REMOTE)
        directory.add_user(s, ACTOR, username="racer", unit_code="R1", full_name="Racer", national_id="001000000777",
                           role=Role.OTHER)
    with transaction(db_runtime.sessions) as s:
        credential_id = credentials.enroll(s, ACTOR, db_runtime.hsm, db_runtime.ca("vnpt"), username="racer",
                                           key_algorithm=KeyAlgorithm.EC_P256).id
        code, _ = approvals.issue_activation_code(s, db_runtime.settings, ACTOR, "racer")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with transaction(db_runtime.sessions) as s:
        _, token = approvals.enroll_device(s, Actor("device", "new"), code, public, "p")
    request_id = new_request(db_runtime, credential_id)
    with transaction(db_runtime.sessions) as s:
        binding = signing_requests.get(s, request_id).binding
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(counter: int) -> None:
        sig = base64.b64encode(sign_decision(key, binding, Decision.APPROVE, counter)).decode()
        barrier.wait()
        try:
            approvals.decide_with_device(db_runtime.sessions, db_runtime.settings, "127.0.0.1", token, request_id,
                                         Decision.APPROVE, counter, sig)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - the loser's error is the point
            outcomes.append(getattr(exc, "code", type(exc).__name__))

    threads = [threading.Thread(target=approve, args=(c,)) for c in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 1, outcomes
    assert set(outcomes) - {"ok"} <= {"request_not_pending", "confirmation_replayed"}
    assert state_of(db_runtime, request_id) is RequestState.APPROVED


def test_long_polls_hold_no_server_thread(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    """More phones waiting than the API has threads: each wait sits in the event loop, so a call
    that needs a thread is still answered at once, and every wait ends on time."""
    from concurrent.futures import ThreadPoolExecutor

    from broker import directory
    from broker.db.models import Role

    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username="thu.quy", unit_code=enrolled.unit, full_name="Lê Thị Thu",
                           national_id="001190000789", role=Role.ACCOUNT_HOLDER)
    device = make_device(runtime, live_server, "thu.quy")
    waiting = runtime.settings.api_threads + 4
    with ThreadPoolExecutor(waiting) as pool:
        started = time.monotonic()
        polls = [pool.submit(device.pending, 4) for _ in range(waiting)]
        time.sleep(1.0)  # all of them are waiting by now
        asked = time.monotonic()
        assert device.pending() == []  # its query needs a pool thread
        assert time.monotonic() - asked < 1.5
        assert all(poll.result(timeout=15) == [] for poll in polls)
    assert 3.5 < time.monotonic() - started < 10
