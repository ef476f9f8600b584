"""A reservation left by a dead worker ends the request failed (outcome unknown), never signed again."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update

from biometrics import Decision
from broker import approvals, credentials
from broker.db.engine import transaction
from broker.db.models import ItemState, RequestItem, RequestState
from broker.lifecycle import recovery, signing_requests, sole_control
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled


def _approved(runtime: Runtime, credential_id: str, text: bytes) -> str:
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, credential_id)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential,
                                  [signing_requests.DocumentToSign(hashlib.sha256(text).digest(), "UNC")],
                                  relying_system="test", provider=runtime.ca(credential.provider))
        approvals.apply_decision(s, ACTOR, request, Decision.APPROVE, via="test", evidence={})
        return request.id


def _reserve(runtime: Runtime, request_id: str, age_seconds: int) -> None:
    """What a worker does right before the HSM signs, then dies."""
    with transaction(runtime.sessions) as s:
        s.execute(update(RequestItem).where(RequestItem.request_id == request_id)
                  .values(state=ItemState.RESERVED, reserved_at=signing_requests.now() - timedelta(seconds=age_seconds)))


def test_a_stale_reservation_fails_the_request_and_never_signs(runtime: Runtime, enrolled: Enrolled) -> None:
    stale = _approved(runtime, enrolled.ec, b"stale")
    fresh = _approved(runtime, enrolled.ec, b"fresh")
    _reserve(runtime, stale, runtime.settings.reservation_timeout_seconds + 5)
    _reserve(runtime, fresh, 1)  # a live worker is signing it right now: not touched
    assert recovery.reclaim(runtime.sessions, runtime.settings, ACTOR) == 1
    assert recovery.reclaim(runtime.sessions, runtime.settings, ACTOR) == 0  # once
    with transaction(runtime.sessions) as s:
        failed = signing_requests.get(s, stale)
        assert failed.state is RequestState.FAILED and failed.failure_reason.startswith("outcome_unknown")
        assert {i.state for i in failed.items} == {ItemState.VOID}
        assert signing_requests.get(s, fresh).state is RequestState.APPROVED
    with pytest.raises(sole_control.NotAuthorised):
        sole_control.sign_approved(runtime.sessions, runtime.hsm, ACTOR, stale)


def test_an_unused_csc_authorisation_expires(runtime: Runtime, enrolled: Enrolled) -> None:
    from broker.db.models import SigningRequest

    unused = _approved(runtime, enrolled.ec, b"sad never used")
    in_time = _approved(runtime, enrolled.ec, b"sad still valid")
    with transaction(runtime.sessions) as s:
        # A SAD lives sad_seconds from the approval.
        approved_long_ago = signing_requests.now() - timedelta(seconds=runtime.settings.sad_seconds + 1)
        s.execute(update(SigningRequest).where(SigningRequest.id == unused)
                  .values(sad_hash="a" * 64, decided_at=approved_long_ago))
        s.execute(update(SigningRequest).where(SigningRequest.id == in_time).values(sad_hash="b" * 64))
    assert recovery.expire_unused_authorisations(runtime.sessions, runtime.settings, ACTOR) == 1
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, unused).state is RequestState.EXPIRED
        assert {i.state for i in signing_requests.get(s, unused).items} == {ItemState.VOID}
        assert signing_requests.get(s, in_time).state is RequestState.APPROVED


def test_one_worker_at_a_time_finishes_a_request(runtime: Runtime, enrolled: Enrolled) -> None:
    """The finishing lease: two workers never build the same request's documents at once."""
    from concurrent.futures import ThreadPoolExecutor

    from broker.db.models import SigningRequest
    from broker.lifecycle import finishing

    rid = _approved(runtime, enrolled.ec, b"leased")
    with transaction(runtime.sessions) as s:  # what a REST request carries
        s.execute(update(SigningRequest).where(SigningRequest.id == rid).values(client_id="c", payload={"documents": []}))
    assert rid in finishing.pending_work(runtime.sessions)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda n: finishing.claim(runtime.sessions, rid, f"w{n}", 60), range(8)))
    assert won.count(True) == 1
    holder = f"w{won.index(True)}"
    other = "w-other"
    assert rid not in finishing.pending_work(runtime.sessions)
    finishing.release(runtime.sessions, rid, other)  # not the holder: nothing changes
    assert not finishing.claim(runtime.sessions, rid, other, 60)
    finishing.release(runtime.sessions, rid, holder)  # after an error: free at once
    assert finishing.claim(runtime.sessions, rid, other, 60)
    with transaction(runtime.sessions) as s:  # the holder died: its lease runs out
        s.execute(update(SigningRequest).where(SigningRequest.id == rid)
                  .values(finishing_until=signing_requests.now() - timedelta(seconds=1)))
    assert rid in finishing.pending_work(runtime.sessions)
    assert finishing.claim(runtime.sessions, rid, holder, 60)
    # The slow worker whose lease was taken over (its last renewal is old) stops before signing.
    with pytest.raises(finishing.LeaseLost):
        finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                             finishing.Lease(other, 60, renewed_at=0.0))
    with transaction(runtime.sessions) as s:
        assert {i.state for i in signing_requests.get(s, rid).items} == {ItemState.AUTHORISED}  # nothing signed
    finishing.release(runtime.sessions, rid, holder, retry_after=30)  # an error: tried again later
    assert rid not in finishing.pending_work(runtime.sessions)
    assert not finishing.claim(runtime.sessions, rid, other, 60)
    with transaction(runtime.sessions) as s:
        s.execute(update(SigningRequest).where(SigningRequest.id == rid)
                  .values(finishing_until=signing_requests.now() - timedelta(seconds=1)))
    assert finishing.claim(runtime.sessions, rid, holder, 60)
    finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                         finishing.Lease(holder, 60))
    with transaction(runtime.sessions) as s:
        done = signing_requests.get(s, rid)
        assert done.state is RequestState.SIGNED and done.finisher is None and done.finishing_until is None
    assert not finishing.claim(runtime.sessions, rid, other, 60)  # only approved requests are finished


def test_the_worker_takes_its_lease_in_the_transaction_that_reserves(runtime: Runtime, enrolled: Enrolled) -> None:
    """``finish(claim=True)``: a lease held by another worker leaves the request untouched; a free one is
    taken with the reservation, in one transaction; a failure there keeps the retry pause."""
    from sqlalchemy import event

    from broker.db.models import SigningRequest
    from broker.lifecycle import finishing

    rid = _approved(runtime, enrolled.ec, b"claimed while reserving")
    with transaction(runtime.sessions) as s:
        s.execute(update(SigningRequest).where(SigningRequest.id == rid).values(client_id="c", payload={"documents": []}))
    assert finishing.claim(runtime.sessions, rid, "other", 60)
    assert not finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                                finishing.Lease("mine", 60), claim=True)
    with transaction(runtime.sessions) as s:
        kept = signing_requests.get(s, rid)
        assert kept.finisher == "other" and {i.state for i in kept.items} == {ItemState.AUTHORISED}

    # A failure in the reserving transaction rolls its claim back; the release still pauses the request.
    finishing.release(runtime.sessions, rid, "other")
    with transaction(runtime.sessions) as s:  # its hashes no longer authorised: reserving them fails
        s.execute(update(RequestItem).where(RequestItem.request_id == rid).values(state=ItemState.VOID))
    with pytest.raises(sole_control.NotAuthorised):
        finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                         finishing.Lease("mine", 60), claim=True)
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, rid).finisher is None  # rolled back with the failure
    finishing.release(runtime.sessions, rid, "mine", retry_after=30)  # what the worker does after an error
    assert rid not in finishing.pending_work(runtime.sessions)  # paused all the same
    with transaction(runtime.sessions) as s:
        s.execute(update(RequestItem).where(RequestItem.request_id == rid).values(state=ItemState.AUTHORISED))
        s.execute(update(SigningRequest).where(SigningRequest.id == rid)
                  .values(finishing_until=signing_requests.now() - timedelta(seconds=1)))

    begun: list[object] = []

    def count(connection: object) -> None:
        begun.append(connection)

    event.listen(runtime.engine, "begin", count)
    try:
        assert finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                                finishing.Lease("mine", 60), claim=True)
    finally:
        event.remove(runtime.engine, "begin", count)
    # reserve (the lease taken in it), store the signatures, end the request: one transaction each
    assert len(begun) == 3
    with transaction(runtime.sessions) as s:
        done = signing_requests.get(s, rid)
        assert done.state is RequestState.SIGNED and done.finisher is None


def test_a_worker_that_lost_its_lease_while_building_never_ends_the_request(runtime: Runtime,
                                                                             enrolled: Enrolled) -> None:
    """The lease is checked again in the transaction that ends the request: a worker taken over while it
    built the documents keeps its signatures stored, and the new holder ends the request from them."""
    from broker.db.models import SigningRequest
    from broker.lifecycle import finishing

    rid = _approved(runtime, enrolled.ec, b"taken over")
    with transaction(runtime.sessions) as s:
        s.execute(update(SigningRequest).where(SigningRequest.id == rid).values(client_id="c", payload={"documents": []}))
    assert finishing.claim(runtime.sessions, rid, "slow", 60)
    with transaction(runtime.sessions) as s:  # another worker took the request over meanwhile
        s.execute(update(SigningRequest).where(SigningRequest.id == rid).values(finisher="fast"))
    with pytest.raises(finishing.LeaseLost):  # its lease was renewed a moment ago: it notices only at the end
        finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services,
                         finishing.Lease("slow", 60))
    with transaction(runtime.sessions) as s:
        kept = signing_requests.get(s, rid)
        assert kept.state is RequestState.APPROVED and kept.finisher == "fast"
        assert {i.state for i in kept.items} == {ItemState.CONSUMED}  # signed once, stored
    finishing.finish(runtime.sessions, runtime.hsm, ACTOR, rid, runtime.long_term_services, finishing.Lease("fast", 60))
    with transaction(runtime.sessions) as s:
        done = signing_requests.get(s, rid)
        assert done.state is RequestState.SIGNED and done.finisher is None and done.finishing_until is None
        assert done.payload["achieved_level"] == "B-B"  # the level reached is written with the end


def test_a_lost_work_file_fails_the_document_instead_of_retrying(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A request stored before the payload was versioned (version 0) reads as it was, and a PDF whose
    work file is gone ends the document failed instead of being retried forever."""
    from signer import pipeline
    from signer.errors import InvalidDocument

    stored = {"kind": "pades", "work_path": str(tmp_path / "gone.pdf"), "output": str(tmp_path / "out.pdf"),
              "document_digest": "00" * 32, "region": [0, 1], "signed_attrs": "AA==", "work_size": 10}
    pending = pipeline.PendingDocument.from_dict(stored)
    with pytest.raises(InvalidDocument):
        pipeline.finish(pending, b"", None)  # type: ignore[arg-type]
    assert not (tmp_path / "out.pdf").exists()
