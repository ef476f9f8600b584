"""Domain rows to response models (pure)."""

from __future__ import annotations

import base64

from api.schemas import DocumentView, PendingRequest, RequestStatus
from broker.db.models import SigningRequest
from broker.lifecycle.clock import aware
from broker.lifecycle.payload import shown_options
from broker.lifecycle.signing_requests import AwaitingRequest


def pending_view(request: SigningRequest | AwaitingRequest) -> PendingRequest:
    """Every field the binding covers, so a device can recompute it from what it shows."""
    options = shown_options(request.payload, len(request.items))
    return PendingRequest(
        request_id=request.id,
        credential_id=request.credential_id,
        relying_system=request.relying_system,
        hash_algorithm=request.hash_algorithm,
        verification_code=request.verification_code,
        binding=base64.b64encode(request.binding).decode(),
        nonce=request.nonce,
        expires_at=aware(request.expires_at),
        documents=[DocumentView(position=i.position, title=i.title, summary=i.summary, hash=i.digest.hex(),
                                options=options[n]) for n, i in enumerate(request.items)],
    )


def status_view(request: SigningRequest) -> RequestStatus:
    return RequestStatus(
        request_id=request.id,
        state=request.state.value,
        verification_code=request.verification_code,
        expires_at=aware(request.expires_at),
        decided_at=aware(request.decided_at) if request.decided_at else None,
    )
