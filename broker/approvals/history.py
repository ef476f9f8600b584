"""A signer's own requests of the last days, and once signed, the signed document and its verdict.

The verdict is computed when first asked for (validation reads the whole file and walks chains) and
kept beside the signed document, 0600, so that opening the history twice validates once.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.db.models import RequestState, SigningRequest
from broker.errors import KysoError, NotFound
from broker.lifecycle.clock import now
from broker.lifecycle.payload import RequestPayload
from signer import validation
from signer.errors import SignerError

DAYS = 30
MAX_ENTRIES = 200


class DocumentGone(KysoError):
    """The signed document is no longer kept (retention), or the request was not signed."""

    code = "document_gone"


def recent(session: Session, user_id: int, *, days: int = DAYS, limit: int = MAX_ENTRIES) -> list[SigningRequest]:
    """The signer's requests created in the last ``days`` days, newest first."""
    since = now() - timedelta(days=days)
    return list(session.scalars(select(SigningRequest)
                                .where(SigningRequest.user_id == user_id, SigningRequest.created_at >= since)
                                .order_by(SigningRequest.created_at.desc()).limit(limit)))


def own_request(session: Session, user_id: int, request_id: str) -> SigningRequest:
    request = session.get(SigningRequest, request_id)
    if request is None or request.user_id != user_id:
        raise NotFound(f"no signing request {request_id[:64]!r}")  # another signer's answers as if it did not exist
    return request


def signed_document(request: SigningRequest, position: int) -> Path:
    """The signed file of document ``position`` while it is kept."""
    if request.state is not RequestState.SIGNED:
        raise DocumentGone(f"request {request.id} is {request.state.value}, not signed")
    outputs = RequestPayload.of(request).outputs
    if not 0 <= position < len(outputs) or not outputs[position].is_file():
        raise DocumentGone("the signed document is no longer kept")
    return outputs[position]


@dataclass(frozen=True)
class Verdict:
    """The signatures' ETSI indications in one line each, for a phone: the full report is POST /v1/validations."""

    indication: str
    """The weakest signature's: TOTAL_PASSED, INDETERMINATE or TOTAL_FAILED; NONE when it cannot be told."""
    signatures: list[dict[str, str | None]]
    validated_at: str
    note: str | None = None


_ORDER = {"TOTAL_FAILED": 0, "INDETERMINATE": 1, "TOTAL_PASSED": 2}


def verdict(request: SigningRequest, position: int, trust: validation.TrustStore) -> Verdict:
    """Validate the signed document once (then from the cache beside it)."""
    signed = signed_document(request, position)
    cache = signed.with_name(signed.name + ".verdict.json")
    try:
        return Verdict(**json.loads(cache.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    try:
        report = validation.validate_file(signed, validation.ValidationOptions(trust))
        found = [{"signer": s.signer, "indication": s.indication.value, "sub_indication": s.sub_indication,
                  "level": s.level} for s in report.signatures]
        weakest = min((str(s["indication"]) for s in found), key=lambda i: _ORDER.get(i, 1), default="NONE")
        result = Verdict(weakest, found, now().isoformat())
    except SignerError as exc:  # e.g. a detached CAdES signature whose content kyso does not keep
        result = Verdict("NONE", [], now().isoformat(), note=exc.code)
    tmp = cache.with_name(cache.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(result), fh)
    tmp.replace(cache)
    return result
