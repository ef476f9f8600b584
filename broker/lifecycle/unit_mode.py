"""Switching a unit between remote signing and USB tokens (the treasury's rule: never both).

Switching to USB tokens ends every open request of the unit's signers in the same transaction:
pending ones and approved ones whose authorisation is unused (a CSC SAD not yet spent, a REST
request the worker has not finished) end ``cancelled`` with reason ``unit_usb_token``, so that
nothing approved before the switch is signed after it. Every signature also re-checks the
unit's mode where its hashes are reserved.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker import audit, directory
from broker.audit import Actor
from broker.db.models import ItemState, RequestItem, RequestState, SigningMode, SigningRequest, Unit, User
from broker.lifecycle import signing_requests

USB_TOKEN_REASON = "unit_usb_token"
_OPEN = (RequestState.PENDING, RequestState.APPROVED)


def set_mode(session: Session, actor: Actor, code: str, mode: SigningMode) -> tuple[Unit, list[str]]:
    """Set the unit's signing form (audited); the ids of the requests this ended (USB tokens only)."""
    unit = directory.get_unit(session, code)
    before = unit.signing_mode
    unit.signing_mode = mode
    ended = end_open_requests(session, actor, unit) if mode is SigningMode.USB_TOKEN else []
    audit.record(session, actor, "unit.set_mode", target_type="unit", target_id=code,
                 details={"from": before.value, "to": mode.value, "requests_ended": len(ended)})
    return unit, ended


def end_open_requests(session: Session, actor: Actor, unit: Unit) -> list[str]:
    open_requests = session.scalars(
        select(SigningRequest).join(User, User.id == SigningRequest.user_id)
        .where(User.unit_id == unit.id, SigningRequest.state.in_(_OPEN))
        .order_by(SigningRequest.created_at).with_for_update())
    ended = []
    for request in open_requests:
        try:
            signing_requests.transition(session, actor, request, RequestState.CANCELLED, expected=_OPEN,
                                failure_reason=USB_TOKEN_REASON, details={"reason": USB_TOKEN_REASON})
        except signing_requests.RequestNotPending:
            continue
        session.execute(update(RequestItem).where(RequestItem.request_id == request.id,
                                                  RequestItem.state != ItemState.CONSUMED)
                        .values(state=ItemState.VOID))
        ended.append(request.id)
    return ended
