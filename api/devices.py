"""The approval app's API: enroll a phone, wait for requests, approve or refuse."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import datetime

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from api.deps import bearer_token, client_origin, runtime
from api.problems import PROBLEM_RESPONSES
from api.schemas import DecisionIn, DeviceEnrollIn, DeviceEnrollOut, PendingList, PendingRequest, RequestStatus
from api.views import pending_view, status_view
from broker import approvals
from broker.audit import Actor
from broker.db.engine import read_connection, transaction
from broker.errors import InvalidInput
from broker.lifecycle import signing_requests, waiting
from broker.lifecycle.clock import seconds_to_first
from broker.notify import LIST_RECHECK_SECONDS, user_topic
from broker.runtime import Runtime

router = APIRouter(prefix="/v1/devices", tags=["approval devices"], responses=PROBLEM_RESPONSES)


@router.post("/enroll", response_model=DeviceEnrollOut, status_code=201)
def enroll(body: DeviceEnrollIn, rt: Runtime = Depends(runtime), origin: str | None = Depends(client_origin)) -> DeviceEnrollOut:
    """Register a phone's P-256 key with a one-time activation code from an administrator."""
    try:
        public_key = base64.b64decode(body.public_key, validate=True)
    except ValueError as exc:
        raise InvalidInput("public_key is not base64") from exc
    with transaction(rt.sessions) as session:
        device, token = approvals.enroll_device(session, Actor("device", "new", origin), body.activation_code,
                                                public_key, body.name)
        return DeviceEnrollOut(device_id=device.id, device_token=token, username=device.user.username,
                               full_name=device.user.full_name)


def list_tag(request_ids: Iterable[str]) -> str:
    """The ETag of a pending list: which requests are in it (each request's content never changes)."""
    return 'W/"' + hashlib.sha256(",".join(request_ids).encode()).hexdigest()[:32] + '"'


@router.get("/me/requests", response_model=PendingList,
            responses={304: {"description": "The list still has the ETag sent in If-None-Match (long poll timed out)."}})
async def pending(
    response: Response,
    wait: float = Query(0, ge=0, le=60, allow_inf_nan=False,
                        description="Long poll: seconds to wait for the list to change (from the ETag in "
                                    "If-None-Match, else from empty)."),
    if_none_match: str | None = Header(None, max_length=80),
    token: str = Depends(bearer_token),
    rt: Runtime = Depends(runtime),
) -> PendingList | Response:
    """The device's user's pending requests, with their ETag. With ``wait``, blocks until the list
    differs from the one the device already has (``If-None-Match``; without it, until one arrives):
    a phone showing a request is not answered again until something changes."""
    known = if_none_match or list_tag(())

    # Core reads on a bare connection, no ORM session or transaction: a phone polls all day. The tag
    # sent is always computed from the list sent.
    def first_look() -> tuple[int, str, list[PendingRequest] | None, list[datetime]]:
        """Who the device is and its list's tag; the list itself at once if the device has not got it,
        else when its requests expire (the list then changes by itself)."""
        with read_connection(rt.sessions) as connection:
            user_id = approvals.device_user_for_token(connection, token)
            rows = signing_requests.awaiting_confirmation(connection, [user_id])
            if list_tag(r.id for r in rows) == known:  # no views built for a list the device already has
                return user_id, known, None, [r.expires_at for r in rows]
            found = _views_of(connection, user_id)
            return user_id, list_tag(r.request_id for r in found), found, []

    def views() -> list[PendingRequest]:
        with read_connection(rt.sessions) as connection:
            approvals.device_user_for_token(connection, token)  # still active after the wait
            return _views_of(connection, user_id)

    def look_again() -> list[PendingRequest] | None:
        """What each wake-up asks: one small Core query; the list too, in the same hand-off, once it changed."""
        with read_connection(rt.sessions) as connection:
            tag = list_tag(r.id for r in signing_requests.awaiting_confirmation(connection, [user_id]))
        return views() if tag != known else None

    user_id, tag, found, expiries = await run_in_threadpool(first_look)
    if found is None:
        timeout = min(wait, rt.settings.long_poll_seconds)
        if timeout > 0:
            # The long poll waits in the event loop (a phone may wait a minute): no pool thread is held.
            found = await rt.notifier.wait_for_async(look_again, _is_list, timeout, recheck=LIST_RECHECK_SECONDS,
                                                     topic=user_topic(user_id),
                                                     changes_in=lambda _: seconds_to_first(expiries))
        if found is None and if_none_match is not None:
            return Response(status_code=304, headers={"ETag": tag})
        if found is None:  # no list sent and still none: the empty one
            found = await run_in_threadpool(views)
    response.headers["ETag"] = list_tag(r.request_id for r in found)
    return PendingList(requests=found)


def _is_list(found: list[PendingRequest] | None) -> bool:
    return found is not None


def _views_of(connection: Connection, user_id: int) -> list[PendingRequest]:
    return [pending_view(r) for r in signing_requests.awaiting_requests(connection, user_id)]


@router.post("/me/requests/{request_id}/decision", response_model=RequestStatus)
def decide(
    request_id: str,
    body: DecisionIn,
    token: str = Depends(bearer_token),
    rt: Runtime = Depends(runtime),
    origin: str | None = Depends(client_origin),
) -> RequestStatus:
    """Approve or refuse with the device key's signature over the binding (refusal is final)."""
    request = approvals.decide_with_device(rt.sessions, rt.settings, origin, token, request_id, body.decision,
                                           body.counter, body.signature)
    rt.notifier.notify(*waiting.changed_topics(request))
    return status_view(request)
