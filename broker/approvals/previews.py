"""What the signer approves, shown: a PDF's pages rendered as images on the server, its signature field marked.

The prepared PDF (the relying system's document with kyso's signature field placed) is rendered in a
child process with a time limit, a memory limit and a page limit, so that a hostile document costs a
bounded amount; the pages are cached, 0600, in the request's own work dir under the blob dir (they go
with it). Nothing here decides anything: the images are for the eye, the binding covers the hashes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.db.models import SigningRequest
from broker.errors import NotFound
from broker.lifecycle.payload import RequestPayload
from broker.settings import Settings

WIDTH = 900
"""Pixels across a rendered page (a phone shows it at 2-3 device pixels per CSS pixel, zoomable)."""
MAX_HEIGHT = 2400
MEMORY_BYTES = 1 << 30
CACHE = "preview"
INDEX = "index.json"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class PreviewUnavailable(NotFound):
    """The document has no pages to show (not a PDF, or its prepared file is gone)."""

    code = "preview_unavailable"


@dataclass(frozen=True)
class Mark:
    """Where the signature goes: a page (1-based) and a box in fractions of the page, from its top left."""

    page: int
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Preview:
    pages: int
    """The document's pages."""
    rendered: int
    """The first ``rendered`` pages have images; fewer than ``pages`` when a limit stopped rendering."""
    marks: tuple[Mark, ...]
    folder: Path

    def page_file(self, number: int) -> Path:
        if not 1 <= number <= self.rendered:
            raise NotFound(f"no rendered page {number}")
        return self.folder / f"page-{number}.png"


def _source(request: SigningRequest, position: int) -> tuple[Path, Path, str]:
    payload = RequestPayload.of(request)
    if not 0 <= position < len(payload.documents) or payload.work is None:
        raise PreviewUnavailable("this document has no pages to show")
    document = payload.documents[position]
    if document.kind != "pades" or document.work_path is None:
        raise PreviewUnavailable("only a PDF's pages are shown")
    options = payload.shown_options[position] if position < len(payload.shown_options) else {}
    field = str(options.get("field_name") or "")
    return document.work_path, payload.work / CACHE / str(position), field


def preview(settings: Settings, request: SigningRequest, position: int) -> Preview:
    """The document's rendered pages, rendering them first if they are not cached yet."""
    pdf, folder, field = _source(request, position)
    cached = _read_index(folder)
    if cached is not None:
        return cached
    with _lock(str(folder)):
        cached = _read_index(folder)
        if cached is not None:
            return cached
        if not pdf.is_file():
            raise PreviewUnavailable("the prepared document is gone")
        return _render(settings, pdf, folder, field)


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _read_index(folder: Path) -> Preview | None:
    try:
        data = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return None
    return Preview(int(data["pages"]), int(data["rendered"]), tuple(Mark(**m) for m in data["marks"]), folder)


def _limits() -> None:  # in the child, before it reads the document
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    os.umask(0o077)


def _render(settings: Settings, pdf: Path, folder: Path, field: str) -> Preview:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [sys.executable, "-m", "broker.approvals.previews", str(pdf), str(folder), field,
               str(settings.preview_max_pages)]
    try:
        subprocess.run(command, timeout=settings.preview_seconds, preexec_fn=_limits, check=False,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pass  # the pages rendered so far are shown, and the signer is told the rest is not
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise PreviewUnavailable("this PDF cannot be rendered") from exc
    rendered = 0
    while rendered < int(meta["pages"]) and (folder / f"page-{rendered + 1}.png").is_file():
        rendered += 1
    index = {"pages": int(meta["pages"]), "rendered": rendered, "marks": meta["marks"]}
    _write_private(folder / INDEX, json.dumps(index).encode())
    return Preview(index["pages"], rendered, tuple(Mark(**m) for m in meta["marks"]), folder)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


# -- the child: parse, find the field, render -------------------------------------------------------------


def _field_marks(pdf: Path, field: str, boxes: list[tuple[float, float, float, float]]) -> list[dict[str, float]]:
    """The named signature field's widgets: page and box (fractions of the page's crop box)."""
    if not field:
        return []
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.reader import PdfFileReader

    marks: list[dict[str, Any]] = []
    with pdf.open("rb") as fh:
        reader = PdfFileReader(fh, strict=False)
        for number in range(min(len(boxes), reader.root["/Pages"].get("/Count", 0))):
            page = reader.find_page_for_modification(number)[0].get_object()
            annots = page["/Annots"] if "/Annots" in page else None
            for annot in annots if isinstance(annots, generic.ArrayObject) else []:
                annot = annot.get_object()
                name = annot.get("/T")
                if name is None and "/Parent" in annot:
                    name = annot["/Parent"].get("/T")
                if str(name) != field or "/Rect" not in annot:
                    continue
                x0, y0, x1, y1 = (float(v) for v in annot["/Rect"])
                left, bottom, right, top = boxes[number]
                width, height = right - left, top - bottom
                if width <= 0 or height <= 0:
                    continue
                marks.append({"page": number + 1, "left": round((min(x0, x1) - left) / width, 4),
                              "top": round((top - max(y0, y1)) / height, 4),
                              "width": round(abs(x1 - x0) / width, 4), "height": round(abs(y1 - y0) / height, 4)})
    return marks


def _child(pdf: Path, folder: Path, field: str, max_pages: int) -> None:
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    total = len(document)
    boxes = [tuple(document[n].get_cropbox()) for n in range(min(total, max_pages))]
    try:
        marks = _field_marks(pdf, field, boxes)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - the pages are still worth showing without the mark
        marks = []
    _write_private(folder / "meta.json", json.dumps({"pages": total, "marks": marks}).encode())
    for number in range(min(total, max_pages)):
        page = document[number]
        width, height = page.get_size()
        scale = min(WIDTH / width, MAX_HEIGHT / height) if width > 0 and height > 0 else 1.0
        image = page.render(scale=scale, may_draw_forms=True).to_pil()
        tmp = folder / f"page-{number + 1}.png.tmp"
        image.save(tmp, format="PNG", optimize=True)
        os.chmod(tmp, 0o600)
        tmp.replace(folder / f"page-{number + 1}.png")
        page.close()
    document.close()


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
