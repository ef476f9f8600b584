"""A signing request's record of its own work: the typed, versioned form of the ``payload`` column.

Written once when the request is created (its work dir, each document's pending state, the level
asked for, the webhook URL, the options the signer was shown), completed when it is finished
(the level reached). Every reader goes through :meth:`RequestPayload.of`; rows written before the
version field existed read as version 0, whose keys are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, overload

from broker.db.models import SigningRequest
from signer.ltv import Level
from signer.pipeline import PendingDocument

VERSION = 1


class _PendingDocuments(Sequence[PendingDocument]):
    """The documents of a stored payload, read from the column only when one is asked for: most
    readers (a request's view, the signer's options, its webhook) need their number or nothing."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self._entries = entries
        self._read: tuple[PendingDocument, ...] | None = None

    def _documents(self) -> tuple[PendingDocument, ...]:
        if self._read is None:
            self._read = tuple(PendingDocument.from_dict(d) for d in self._entries)
        return self._read

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> PendingDocument: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PendingDocument]: ...

    def __getitem__(self, index: int | slice) -> PendingDocument | Sequence[PendingDocument]:
        return self._documents()[index]


@dataclass(frozen=True)
class RequestPayload:
    work: Path | None = None
    """The request's own work dir under the blob dir (documents in, prepared and signed files)."""
    documents: Sequence[PendingDocument] = ()
    uploads: tuple[str | None, ...] = ()
    """Per document, the uploaded document it was made from (kept as long as the request needs it)."""
    webhook_url: str | None = None
    level: Level = Level.B_B
    accept_lower_level: bool = False
    achieved_level: Level | None = None
    shown_options: tuple[dict[str, str | bool], ...] = ()
    """Per document, the options the signer was shown and approved (bound), in position order."""

    @classmethod
    def of(cls, request: SigningRequest) -> RequestPayload:
        return cls.from_column(request.payload)

    @classmethod
    def from_column(cls, value: dict[str, Any] | None) -> RequestPayload:
        data = value or {}
        if int(data.get("v", 0)) > VERSION:
            raise ValueError(f"a request payload of version {data['v']} is newer than this kyso ({VERSION})")
        entries = [d for d in data.get("documents") or [] if d]
        return cls(
            work=Path(data["work"]) if data.get("work") else None,
            documents=_PendingDocuments(entries),
            uploads=tuple(d.get("upload") for d in entries),
            webhook_url=data.get("webhook_url"),
            level=Level(data.get("level") or Level.B_B.value),
            accept_lower_level=bool(data.get("accept_lower_level")),
            achieved_level=Level(data["achieved_level"]) if data.get("achieved_level") else None,
            shown_options=tuple(dict(o) for o in data.get("shown_options") or []),
        )

    def to_column(self) -> dict[str, Any]:
        documents = []
        for n, document in enumerate(self.documents):
            entry = document.to_dict()
            if n < len(self.uploads) and self.uploads[n]:
                entry["upload"] = self.uploads[n]
            documents.append(entry)
        column: dict[str, Any] = {"v": VERSION, "level": self.level.value, "accept_lower_level": self.accept_lower_level}
        if self.work is not None:
            column["work"] = str(self.work)
        if documents:
            column["documents"] = documents
        if self.webhook_url:
            column["webhook_url"] = self.webhook_url
        if self.achieved_level is not None:
            column["achieved_level"] = self.achieved_level.value
        if any(self.shown_options):
            column["shown_options"] = [dict(o) for o in self.shown_options]
        return column

    def reached(self, level: Level) -> RequestPayload:
        return replace(self, achieved_level=level)

    @property
    def outputs(self) -> list[Path]:
        return [d.output for d in self.documents]


def shown_options(payload: dict[str, Any] | None, count: int) -> list[dict[str, str | bool]]:
    """Each of a request's ``count`` documents' bound options, in position order (empty ones without options)."""
    kept = RequestPayload.from_column(payload).shown_options
    return [dict(kept[n]) if n < len(kept) else {} for n in range(count)]
