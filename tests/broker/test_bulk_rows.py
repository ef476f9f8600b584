"""A request's hashes written and signed in one round trip each (PostgreSQL: COPY and one UPDATE), on
the suite's database: every row as given, text exactly as the signer is shown it, each signature on
its own hash, and nothing written to a row that is no longer reserved."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from sqlalchemy import select, update

from broker import credentials
from broker.db import bulk
from broker.db.engine import transaction
from broker.db.models import ItemState, RequestItem
from broker.lifecycle import signing_requests, sole_control
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled

TRICKY = ["Ủy nhiệm chi \\N 'UNC-1' \"trích\" \\\\ 100%", "a,b;c|d", "\\.", "NULL", "tab-free but\\ttext"]


def test_fifty_hashes_are_written_and_signed_as_given(runtime: Runtime, enrolled: Enrolled) -> None:
    documents = [signing_requests.DocumentToSign(hashlib.sha256(b"bulk %d" % n).digest(), TRICKY[n % len(TRICKY)] + f" {n}",
                                                 f"dòng 1\ndòng 2 \\n {n}" if n % 2 else "")
                 for n in range(50)]
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.rsa)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential, documents, relying_system="test",
                                          provider=runtime.ca(credential.provider))
        request_id = request.id
    with transaction(runtime.sessions) as s:
        rows = s.execute(select(RequestItem.position, RequestItem.digest, RequestItem.title, RequestItem.summary,
                                RequestItem.state, RequestItem.signature)
                         .where(RequestItem.request_id == request_id).order_by(RequestItem.position)).all()
    assert [(r.position, r.digest, r.title, r.summary) for r in rows] == [
        (n, d.digest, d.title, d.summary) for n, d in enumerate(documents)]
    assert {r.state for r in rows} == {ItemState.PENDING} and {r.signature for r in rows} == {None}

    with transaction(runtime.sessions) as s:  # approved, then reserved for signing
        s.execute(update(RequestItem).where(RequestItem.request_id == request_id).values(state=ItemState.AUTHORISED))
        request = signing_requests.get(s, request_id)
        signing_requests.transition(s, ACTOR, request, signing_requests.RequestState.APPROVED)
    with transaction(runtime.sessions) as s:
        reservation = sole_control.reserve(s, runtime.hsm, signing_requests.get(s, request_id))
    signatures = sole_control.sign_reserved(runtime.sessions, ACTOR, reservation)
    with transaction(runtime.sessions) as s:
        stored = s.execute(select(RequestItem.digest, RequestItem.state, RequestItem.signature)
                           .where(RequestItem.request_id == request_id).order_by(RequestItem.position)).all()
    assert [r.signature for r in stored] == signatures and {r.state for r in stored} == {ItemState.CONSUMED}
    public_key = x509.load_der_x509_certificate(credential.certificate).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    for row in stored:  # each signature on its own hash
        public_key.verify(row.signature, row.digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

def test_a_row_no_longer_reserved_keeps_what_it_holds(runtime: Runtime, enrolled: Enrolled) -> None:
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.rsa)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential, [
            signing_requests.DocumentToSign(hashlib.sha256(b"kept %d" % n).digest(), f"UNC {n}") for n in range(3)],
            relying_system="test", provider=runtime.ca(credential.provider))
        request_id = request.id
        s.execute(update(RequestItem).where(RequestItem.request_id == request_id).values(state=ItemState.RESERVED))
    with transaction(runtime.sessions) as s:
        ids = list(s.scalars(select(RequestItem.id).where(RequestItem.request_id == request_id)
                             .order_by(RequestItem.position)))
        s.execute(update(RequestItem).where(RequestItem.id == ids[1]).values(state=ItemState.VOID))
    with transaction(runtime.sessions) as s:
        sole_control.store_signatures(s.connection(), ids, [b"sig %d" % n for n in range(len(ids))])
    with transaction(runtime.sessions) as s:
        found = s.execute(select(RequestItem.state, RequestItem.signature).where(RequestItem.request_id == request_id)
                          .order_by(RequestItem.position)).all()
    assert [tuple(r) for r in found] == [(ItemState.CONSUMED, b"sig 0"), (ItemState.VOID, None),
                                         (ItemState.CONSUMED, b"sig 2")]


def test_rows_refused_by_the_database_raise_its_error_and_leave_nothing(runtime: Runtime) -> None:
    from sqlalchemy.exc import IntegrityError

    rows = [{"request_id": "no-such-request", "position": n, "digest": bytes(32), "title": f"UNC {n}", "summary": "",
             "state": ItemState.PENDING} for n in range(3)]
    try:
        with transaction(runtime.sessions) as s:
            bulk.insert_rows(s.connection(), signing_requests._ADD_ITEMS, rows)
    except IntegrityError:
        pass
    else:
        raise AssertionError("a row for a request that does not exist was written")
    with transaction(runtime.sessions) as s:  # the connection serves again, and nothing was written
        assert s.scalars(select(RequestItem.id).where(RequestItem.request_id == "no-such-request")).all() == []
