"""Sole control: the one module that uses a signer's key, and only for hashes the signer approved.

An approval authorises exactly the request's hashes. Each hash is a row moved
authorised → reserved → consumed by conditional updates, so a hash is signed at most once even
with several workers racing; a reservation is released only after a definite failure. In
production this check belongs in the HSM's signature activation module (EN 419 241-2); it stays
behind :func:`sign_approved` so that it can move there.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Credential, ItemState, RequestItem, RequestState
from broker.errors import Conflict
from broker.observability import metrics
from broker.services import credentials
from broker.services import signing_requests as requests
from hsm import Hsm, HsmError
from signer import PssParams, Scheme, SignerError


class NotAuthorised(Conflict):
    """No approved, unused authorisation covers this request."""

    code = "not_authorised"


def sign_approved(
    factory: sessionmaker[Session],
    hsm: Hsm,
    actor: Actor,
    request_id: str,
    *,
    scheme: Scheme | None = None,
    pss: PssParams | None = None,
    mark_signed: bool = True,
) -> list[bytes]:
    """Sign the request's approved hashes, in order, exactly once; the request ends ``signed``.

    With ``mark_signed=False`` the request stays ``approved`` with its signatures stored, for a
    caller that still has to build documents around them (and marks the request itself).
    """
    with transaction(factory) as session:
        request = requests.get(session, request_id)
        if request.state is not RequestState.APPROVED:
            raise NotAuthorised(f"request {request_id} is {request.state.value}; only an approved request signs")
        moment = requests.now()
        reserved = session.execute(
            update(RequestItem)
            .where(RequestItem.request_id == request_id, RequestItem.state == ItemState.AUTHORISED)
            .values(state=ItemState.RESERVED, reserved_at=moment)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        items = session.execute(select(RequestItem.id, RequestItem.digest).where(RequestItem.request_id == request_id)
                                .order_by(RequestItem.position)).all()
        if reserved != len(items):
            raise NotAuthorised(f"the authorisation of request {request_id} was already used")
        credential = session.get(Credential, request.credential_id)
        assert credential is not None
        key = credentials.key_signer(hsm, credential)
        hash_name = request.hash_algorithm

    started = time.perf_counter()
    try:
        # The batch in one call: the HSM signs it over as few sessions as it can, one key look-up each.
        signatures = key.sign_many([item.digest for item in items], hash_name, scheme=scheme, pss=pss)
    except (HsmError, SignerError) as exc:
        if isinstance(exc, HsmError):
            metrics.record_hsm_error(exc.code)
        # A definite failure: nothing was signed for the rest; the request ends failed.
        with transaction(factory) as session:
            request = requests.get(session, request_id)
            session.execute(update(RequestItem).where(RequestItem.request_id == request_id,
                                                      RequestItem.state == ItemState.RESERVED)
                            .values(state=ItemState.VOID))
            requests.transition(session, actor, request, RequestState.FAILED, expected=(RequestState.APPROVED,),
                                failure_reason=f"{exc.code}: {exc.message}"[:255], details={"reason": exc.code})
        raise
    per_signature = (time.perf_counter() - started) / max(len(signatures), 1)
    for _ in signatures:
        metrics.observe_hsm_sign(per_signature)

    with transaction(factory) as session:
        items_table = RequestItem.__table__
        session.connection().execute(
            update(items_table)
            .where(items_table.c.id == bindparam("item_id"), items_table.c.state == ItemState.RESERVED)
            .values(state=ItemState.CONSUMED, signature=bindparam("b_signature")),
            [{"item_id": item.id, "b_signature": signature} for item, signature in zip(items, signatures)])
        if mark_signed:
            request = requests.get(session, request_id)
            requests.transition(session, actor, request, RequestState.SIGNED, expected=(RequestState.APPROVED,),
                                details={"signatures": len(signatures)})
    return signatures
