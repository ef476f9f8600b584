"""A request's stored payload: read back as written, its documents parsed only when one is asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.lifecycle.payload import RequestPayload
from signer.errors import InvalidDocument
from signer.ltv import Level
from signer.pipeline import PendingDocument

CADES = {"v": 1, "kind": "cades", "dtbs": "ab" * 32, "document_sha256": "cd" * 32, "output": "/w/0.p7s",
         "content": "/w/0.xml", "signed_attrs": "MAA=", "shown": {}}


def _column(*documents: dict[str, object]) -> dict[str, object]:
    return {"v": 1, "level": "B-T", "accept_lower_level": True, "work": "/w", "webhook_url": "https://rs.example/hook",
            "documents": list(documents), "shown_options": [{"field_name": "Sig1", "certify": False}]}


def test_a_payload_reads_back_as_it_was_written() -> None:
    column = _column(CADES, {**CADES, "output": "/w/1.p7s", "content": "/w/1.xml"})
    payload = RequestPayload.from_column(column)
    assert len(payload.documents) == 2 and payload.outputs == [Path("/w/0.p7s"), Path("/w/1.p7s")]
    assert isinstance(payload.documents[1], PendingDocument) and payload.documents[1].work_path == Path("/w/1.xml")
    assert payload.level is Level.B_T and payload.webhook_url == "https://rs.example/hook"
    assert RequestPayload.from_column(payload.reached(Level.B_T).to_column()).achieved_level is Level.B_T
    written = payload.to_column()
    assert written["documents"] == [PendingDocument.from_dict(d).to_dict() for d in column["documents"]]  # type: ignore[union-attr]


def test_documents_are_parsed_only_when_one_is_asked_for() -> None:
    newer = {**CADES, "v": 99}  # a document this kyso cannot read
    payload = RequestPayload.from_column(_column(CADES, newer))
    # What a request's view, the signer's options and its webhook need: no document parsed.
    assert len(payload.documents) == 2
    assert payload.shown_options[0]["field_name"] == "Sig1" and payload.webhook_url
    with pytest.raises(InvalidDocument):
        payload.documents[0]
