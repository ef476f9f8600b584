"""The treasury's rules on every signing path, tenancy between relying systems, and refusals audited.

A unit signs remotely or with USB tokens, never both: the unit's mode and the provider's revocation
status are checked on every path (REST, CSC, ``kyso sign`` confirmed and unconfirmed, the signing
step itself), and switching a unit to USB tokens ends what it had open. A request belongs to the
relying system that made it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from biometrics import Decision
from broker import approvals, clients, credentials, directory
from broker.db.engine import transaction
from broker.db.models import (
    AuditEvent,
    Credential,
    CredentialStatus,
    RequestState,
    Role,
    SigningMode,
    SigningRequest,
    Unit,
)
from broker.errors import UnitInUsbTokenMode
from broker.lifecycle import signing_requests, sole_control
from broker.runtime import Runtime
from ca_adapters import RevocationReason
from hsm import KeyAlgorithm
from tests.conftest import ACTOR
from tests.support import AutoApprover, b64, bearer_http, make_device, wait_done

Kyso = Callable[..., tuple[int, str, str]]

UNIT = "POL1"


@dataclass(frozen=True)
class Setup:
    kt: str  # the chief accountant's credential: a phone approves it
    cth: str  # the account holder's: no phone, its requests stay pending
    own: httpx.Client  # a client of the relying system that makes the requests
    reader: httpx.Client  # a read-only client of the same system
    other: httpx.Client  # a client of another relying system serving the same unit


@pytest.fixture(scope="module")
def setup(runtime: Runtime, live_server: str) -> Iterator[Setup]:
    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, UNIT, "Ban Quản lý chính sách", SigningMode.REMOTE)
        directory.add_user(s, ACTOR, username="pol.kt", unit_code=UNIT, full_name="Phạm Thị Kế",
                           national_id="001190000201", role=Role.CHIEF_ACCOUNTANT)
        directory.add_user(s, ACTOR, username="pol.cth", unit_code=UNIT, full_name="Vũ Văn Chủ",
                           national_id="001190000202", role=Role.ACCOUNT_HOLDER)
    ids = []
    for username, provider in (("pol.kt", "vnpt"), ("pol.cth", "viettel")):
        with transaction(runtime.sessions) as s:
            ids.append(credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca(provider), username=username,
                                          key_algorithm=KeyAlgorithm.EC_P256).id)
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-pol", [UNIT])
        clients.add_relying_system(s, ACTOR, "dvc-pol-other", [UNIT])
        own, own_secret = clients.add_client(s, ACTOR, "dvc-pol")
        reader, reader_secret = clients.add_client(s, ACTOR, "dvc-pol", ["read"])
        other, other_secret = clients.add_client(s, ACTOR, "dvc-pol-other")
        logins = [(own.client_id, own_secret), (reader.client_id, reader_secret), (other.client_id, other_secret)]
    approver = AutoApprover([make_device(runtime, live_server, "pol.kt")])
    sessions = [bearer_http(live_server, *login, timeout=60) for login in logins]
    yield Setup(ids[0], ids[1], *sessions)
    approver.stop()
    for session in sessions:
        session.close()


def raw_request(api: httpx.Client, credential_id: str, text: bytes) -> httpx.Response:
    return api.post("/v1/requests", json={"credential_id": credential_id, "hashes": [
        {"hash": b64(hashlib.sha256(text).digest()), "title": "Ủy nhiệm chi", "summary": "1.000.000 VND"}]})


def refusals(runtime: Runtime, action: str) -> list[AuditEvent]:
    with transaction(runtime.sessions) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.outcome == "refused")))



# -- tenancy and scopes ----------------------------------------------------------------------------------


def test_a_request_belongs_to_the_relying_system_that_made_it(setup: Setup, runtime: Runtime,
                                                              tmp_path: Path) -> None:
    created = setup.own.post("/v1/requests", json={"credential_id": setup.kt, "format": "cades", "documents": [
        {"title": "Ủy nhiệm chi", "content": b64("<UNC>bí mật</UNC>".encode()), "enveloping": True}]})
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    assert wait_done(setup.own, request_id, polls=6)["state"] == "signed"
    assert setup.own.get(f"/v1/requests/{request_id}/documents/0").status_code == 200

    # Another relying system serves the same unit: it sees the credential, never the request.
    assert any(c["credential_id"] == setup.kt for c in setup.other.get("/v1/credentials").json())
    for method, path in [("GET", f"/v1/requests/{request_id}"), ("GET", f"/v1/requests/{request_id}?wait=1"),
                         ("GET", f"/v1/requests/{request_id}/documents/0"),
                         ("GET", f"/v1/requests/{request_id}/webhooks"),
                         ("POST", f"/v1/requests/{request_id}/cancel")]:
        answer = setup.other.request(method, path)
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found"), (path, answer.text)
        assert "bí mật" not in answer.text
    after = setup.other.post("/v1/requests", json={"credential_id": setup.kt, "format": "cades",
                                                   "after_request_id": request_id, "documents": [{"title": "x"}]})
    assert (after.status_code, after.json()["code"]) == (404, "not_found"), after.text


def test_a_pending_request_is_not_the_other_systems_to_cancel(setup: Setup, runtime: Runtime) -> None:
    created = raw_request(setup.own, setup.cth, b"cancel me not")
    request_id = created.json()["request_id"]
    answer = setup.other.post(f"/v1/requests/{request_id}/cancel")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert setup.own.get(f"/v1/requests/{request_id}").json()["state"] == "pending"
    assert setup.own.post(f"/v1/requests/{request_id}/cancel").json()["state"] == "cancelled"


def test_cancelling_needs_the_sign_scope(setup: Setup, runtime: Runtime) -> None:
    request_id = raw_request(setup.own, setup.cth, b"read only").json()["request_id"]
    before = len(refusals(runtime, "request.cancel"))
    answer = setup.reader.post(f"/v1/requests/{request_id}/cancel")
    assert (answer.status_code, answer.json()["code"]) == (403, "insufficient_scope")
    assert setup.reader.get(f"/v1/requests/{request_id}").json()["state"] == "pending"
    assert len(refusals(runtime, "request.cancel")) == before + 1
    setup.own.post(f"/v1/requests/{request_id}/cancel")


# -- refused attempts are audited ------------------------------------------------------------------------


def test_refused_sign_hash_attempts_are_audited(setup: Setup, runtime: Runtime, live_server: str) -> None:
    digest = hashlib.sha256(b"audit me").digest()
    authorised = setup.own.post("/csc/v2/credentials/authorize", json={
        "credentialID": setup.kt, "numSignatures": 1, "hashes": [b64(digest)], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
    assert authorised.status_code == 200, authorised.text
    sad = authorised.json()["SAD"]
    call = {"credentialID": setup.kt, "SAD": sad, "hashes": [b64(digest)], "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1",
            "signAlgo": "1.2.840.10045.4.3.2"}
    before = len(refusals(runtime, "csc.sign_hash"))
    attempts = [
        (setup.own, {**call, "hashes": [b64(hashlib.sha256(b"other").digest())]}),  # hashes the SAD does not cover
        (setup.own, {**call, "credentialID": setup.cth}),  # another credential
        (setup.other, call),  # another relying system's SAD
        (setup.own, {**call, "SAD": "forged"}),
    ]
    for client, body in attempts:
        assert client.post("/csc/v2/signatures/signHash", json=body).status_code == 400
    assert setup.own.post("/csc/v2/signatures/signHash", json=call).status_code == 200
    assert setup.own.post("/csc/v2/signatures/signHash", json=call).status_code == 400  # replay
    events = refusals(runtime, "csc.sign_hash")[before:]
    assert len(events) == len(attempts) + 1
    assert {e.details["reason"] for e in events} == {"invalid_sad"}
    assert all(e.actor.startswith("client:dvc-pol") for e in events)


# -- the provider's word: revoked or unknown certificates sign nothing, whatever the path ---------------


def test_a_certificate_revoked_at_the_provider_signs_on_no_path(setup: Setup, runtime: Runtime, kyso: Kyso,
                                                                
                                                                tmp_path: Path) -> None:
    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username="pol.rev", unit_code=UNIT, full_name="Lý Thị Thu Hồi",
                           national_id="001190000203", role=Role.ACCOUNT_HOLDER)
        credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("misa"), username="pol.rev",
                                        key_algorithm=KeyAlgorithm.EC_P256)
        credential_id, serial = credential.id, int(credential.serial_hex, 16)
    runtime.ca("misa").revoke(serial, RevocationReason.KEY_COMPROMISE)  # at the CA, kyso not told

    answer = raw_request(setup.own, credential_id, b"revoked")
    assert (answer.status_code, answer.json()["code"]) == (403, "certificate_revoked"), answer.text
    authorise = setup.own.post("/csc/v2/credentials/authorize", json={
        "credentialID": credential_id, "numSignatures": 1, "hashes": [b64(hashlib.sha256(b"r").digest())]})
    assert (authorise.status_code, authorise.json()["error"]) == (403, "access_denied")
    document = tmp_path / "order.xml"
    document.write_bytes(b"<UNC/>")
    for unconfirmed in ([], ["--unconfirmed"]):
        code, _, err = kyso("sign", *unconfirmed, str(document), "--out", str(tmp_path / "o.p7s"),
                            "--credential", credential_id, "--format", "cades")
        assert code != 0 and "certificate_revoked" in err, err
        assert not (tmp_path / "o.p7s").exists()
    with transaction(runtime.sessions) as s:
        assert s.scalar(select(SigningRequest.id).where(SigningRequest.credential_id == credential_id)) is None
    assert {e.details["reason"] for e in refusals(runtime, "request.create") if e.target_id == credential_id} \
        == {"certificate_revoked"}


# -- one credential per provider and user, unless renewed --------------------------------------------------


def test_enrolling_the_same_provider_twice_is_refused_renewal_is_explicit(
        setup: Setup, runtime: Runtime, kyso: Kyso) -> None:
    code, _, err = kyso("cert", "enroll", "--user", "pol.kt", "--ca", "vnpt", "--key", "ec-p256")
    assert code != 0 and "credential_exists" in err and "renew" in err
    with transaction(runtime.sessions) as s:
        user = directory.get_user(s, "pol.kt")
        assert [c.id for c in user.credentials if c.status is CredentialStatus.ACTIVE] == [setup.kt]
    # Another provider is another credential.
    code, _, err = kyso("cert", "enroll", "--user", "pol.cth", "--ca", "nacencomm", "--key", "ec-p256")
    assert code == 0, err


# -- the unit's mode, last: it switches the module's unit to USB tokens ----------------------------------


def test_switching_to_usb_tokens_ends_open_requests_and_every_path_refuses(
        setup: Setup, runtime: Runtime, kyso: Kyso, tmp_path: Path) -> None:
    pending_id = raw_request(setup.own, setup.cth, b"left pending").json()["request_id"]
    digest = hashlib.sha256(b"approved before the switch").digest()
    authorised = setup.own.post("/csc/v2/credentials/authorize", json={
        "credentialID": setup.kt, "numSignatures": 1, "hashes": [b64(digest)]})
    assert authorised.status_code == 200, authorised.text

    code, out, err = kyso("unit", "set-mode", UNIT, "usb-token")
    assert code == 0, err
    assert "open signing request(s) of the unit cancelled" in out

    assert setup.own.get(f"/v1/requests/{pending_id}").json()["state"] == "cancelled"
    sign = setup.own.post("/csc/v2/signatures/signHash", json={
        "credentialID": setup.kt, "SAD": authorised.json()["SAD"], "hashes": [b64(digest)],
        "signAlgo": "1.2.840.10045.4.3.2"})
    assert sign.status_code == 400 and "signatures" not in sign.json()
    with transaction(runtime.sessions) as s:
        cancelled = s.scalars(select(AuditEvent).where(AuditEvent.action == "request.cancelled",
                                                       AuditEvent.target_id == pending_id)).one()
        assert cancelled.details == {"reason": "unit_usb_token"}

    answer = raw_request(setup.own, setup.kt, b"after the switch")
    assert (answer.status_code, answer.json()["code"]) == (403, "unit_in_usb_token_mode")
    authorise = setup.own.post("/csc/v2/credentials/authorize", json={
        "credentialID": setup.kt, "numSignatures": 1, "hashes": [b64(digest)]})
    assert (authorise.status_code, authorise.json()["error"]) == (403, "access_denied")
    document = tmp_path / "order.xml"
    document.write_bytes(b"<UNC/>")
    for unconfirmed in ([], ["--unconfirmed"]):
        code, _, err = kyso("sign", *unconfirmed, str(document), "--out", str(tmp_path / "o.p7s"),
                            "--credential", setup.kt, "--format", "cades")
        assert code != 0 and "unit_in_usb_token_mode" in err, err
        assert not (tmp_path / "o.p7s").exists()

    code, _, err = kyso("unit", "set-mode", UNIT, "remote")
    assert code == 0, err


def test_the_signing_step_itself_checks_the_unit(setup: Setup, runtime: Runtime) -> None:
    """An approved request whose unit switched without the cascade (a race) still signs nothing."""
    with transaction(runtime.sessions) as s:
        credential = s.get(Credential, setup.kt)
        assert credential is not None
        request = signing_requests.create(s, runtime.settings, ACTOR, credential,
                                  [signing_requests.DocumentToSign(hashlib.sha256(b"race").digest(), "UNC")],
                                  relying_system="test", provider=runtime.ca(credential.provider))
        approvals.apply_decision(s, ACTOR, request, Decision.APPROVE, via="test", evidence={})
        request_id = request.id
    with transaction(runtime.sessions) as s:
        s.execute(update(Unit).where(Unit.code == UNIT).values(signing_mode=SigningMode.USB_TOKEN))
    try:
        with pytest.raises(UnitInUsbTokenMode):
            sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, request_id)
        with transaction(runtime.sessions) as s:
            request = signing_requests.get(s, request_id)
            assert request.state is RequestState.APPROVED
            assert all(item.signature is None for item in request.items)
    finally:
        with transaction(runtime.sessions) as s:
            s.execute(update(Unit).where(Unit.code == UNIT).values(signing_mode=SigningMode.REMOTE))
