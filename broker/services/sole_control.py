"""Sole control: the one module that uses a signer's key, and only for hashes the signer approved.

An approval authorises exactly the request's hashes. Each hash is a row moved
authorised → reserved → consumed by conditional updates, so a hash is signed at most once even
with several workers racing; a reservation is released only after a definite failure. In
production this check belongs in the HSM's signature activation module (EN 419 241-2); it stays
behind :func:`sign_approved` so that it can move there.
"""

from __future__ import annotations

import time

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Credential, ItemState, RequestItem, RequestState
from broker.errors import Conflict
from broker.observability import metrics
from broker.services import credentials
from broker.services import signing_requests as requests
from hsm import Hsm, HsmError
from signer import KeySigner, PssParams, Scheme, SignerError


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
        ).rowcount  # type: ignore[attr-defined]
        if reserved != len(request.items):
            raise NotAuthorised(f"the authorisation of request {request_id} was already used")
        credential = session.get(Credential, request.credential_id)
        assert credential is not None
        key = credentials.key_signer(hsm, credential)
        items = [(item.id, item.digest) for item in request.items]
        hash_name = request.hash_algorithm

    try:
        signatures = [_timed_sign(key, digest, hash_name, scheme, pss) for _, digest in items]
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

    with transaction(factory) as session:
        for (item_id, _), signature in zip(items, signatures):
            session.execute(update(RequestItem).where(RequestItem.id == item_id, RequestItem.state == ItemState.RESERVED)
                            .values(state=ItemState.CONSUMED, signature=signature))
        if mark_signed:
            request = requests.get(session, request_id)
            requests.transition(session, actor, request, RequestState.SIGNED, expected=(RequestState.APPROVED,),
                                details={"signatures": len(signatures)})
    return signatures


def _timed_sign(key: KeySigner, digest: bytes, hash_name: str, scheme: Scheme | None, pss: PssParams | None) -> bytes:
    started = time.perf_counter()
    signature = key.sign(digest, hash_name, scheme=scheme, pss=pss)
    metrics.observe_hsm_sign(time.perf_counter() - started)
    return signature
