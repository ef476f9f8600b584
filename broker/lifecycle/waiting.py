"""Waiting for a signer's decision: what CSC ``authorize``, the REST long poll's callers and
``kyso sign`` use. A wait re-checks the request at each wake-up (a notification naming it, or the
periodic re-check), expiring it when its time ran out, so a lost notification only delays."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from broker import approvals
from broker.approvals import RequestExpired
from broker.audit import Actor
from broker.db.models import RequestState, SigningRequest
from broker.errors import Conflict, NotFound
from broker.notify import WORK_TOPIC, Notifier, request_topic


class RequestRejected(Conflict):
    """The signer refused: final, nothing was signed."""

    code = "request_rejected"


class RequestNotApproved(Conflict):
    """The request ended another way (cancelled, failed) before its signer approved it."""

    code = "request_not_approved"


def wait_for_decision(factory: sessionmaker[Session], notifier: Notifier, request_id: str, actor: Actor,
                      timeout: float | None = None) -> RequestState:
    """Block until the request is decided, expires, or ``timeout`` passes (then still pending)."""
    limit = timeout if timeout is not None else float("inf")
    return notifier.wait_for(_state_check(factory, actor, request_id), _decided, limit, recheck=0.5)


async def wait_for_decision_async(factory: sessionmaker[Session], notifier: Notifier, request_id: str, actor: Actor,
                                  timeout: float) -> RequestState:
    """:func:`wait_for_decision` in a coroutine, holding no thread while it waits."""
    return await notifier.wait_for_async(_state_check(factory, actor, request_id), _decided, timeout,
                                         topic=request_topic(request_id))


def raise_for_state(state: RequestState, request_id: str) -> None:
    """Nothing to sign unless approved: say why, with a stable code."""
    if state is RequestState.REJECTED:
        raise RequestRejected(f"the signer refused request {request_id}; nothing was signed")
    if state is RequestState.EXPIRED:
        raise RequestExpired(f"request {request_id} expired without approval; nothing was signed")
    if state is not RequestState.APPROVED:
        raise RequestNotApproved(f"request {request_id} ended {state.value} without approval; nothing was signed")


def _state_check(factory: sessionmaker[Session], actor: Actor, request_id: str) -> Callable[[], RequestState]:
    def check() -> RequestState:
        state = approvals.expire_due(factory, actor, request_id)
        if state is None:
            raise NotFound(f"no signing request {request_id!r}")
        return state

    return check


def _decided(state: RequestState) -> bool:
    return state is not RequestState.PENDING


def changed_topics(request: SigningRequest) -> tuple[str, ...]:
    """Whom a signer's decision on ``request`` wakes: its own waiters, unless it is a relying system's
    REST request just approved (they wait for its end, which its worker announces); and, unless it is
    a CSC authorisation (the client signs its hashes itself, and has no webhooks), the signing worker.
    Not the signer's lists: they re-check every second (:data:`broker.notify.LIST_RECHECK_SECONDS`)."""
    if request.sad_hash is not None:
        return (request_topic(request.id),)
    if request.state is RequestState.APPROVED and request.client_id is not None:
        return (WORK_TOPIC,)
    return request_topic(request.id), WORK_TOPIC
