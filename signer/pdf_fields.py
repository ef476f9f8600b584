"""Signature fields of a PDF: opening it for an update, adding empty fields, placing a new one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, SigFieldSpec

from signer.errors import InvalidDocument, InvalidFieldPlace, SignerError


@dataclass(frozen=True)
class FieldSpec:
    """A signature field to create before anyone signs."""

    name: str
    page: int = 0
    box: tuple[int, int, int, int] | None = None
    lock_self: bool = False
    """Lock this field once signed (FieldMDP), as the certifying signer's field does."""


MIN_BOX_POINTS = 20


def check_box(box: Sequence[float]) -> None:
    if len(box) != 4 or not all(isinstance(v, int | float) and 0 <= v < 100_000 for v in box):
        raise InvalidFieldPlace("a box is four numbers x1, y1, x2, y2 in PDF points")
    x1, y1, x2, y2 = box
    if x2 - x1 < MIN_BOX_POINTS or y2 - y1 < MIN_BOX_POINTS:
        raise InvalidFieldPlace(f"a box is at least {MIN_BOX_POINTS} points wide and high, x1 < x2 and y1 < y2")


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Whatever a malformed PDF makes the parser raise is the document's fault: InvalidDocument.

    A hostile file reaches places pyHanko does not guard (a catalog that is an array, a missing
    /Pages, arrays nested past the recursion limit, a loop in the form tree). Kyso's own errors and
    the disk's pass through.
    """
    try:
        yield
    except (SignerError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the parser's errors are many and unlisted
        detail = f"{type(exc).__name__}: {exc}"[:120]
        raise InvalidDocument(f"{what}: {detail}") from exc


def open_for_update(pdf_in: BinaryIO) -> IncrementalPdfFileWriter:
    with reading("not a readable PDF"):
        writer = IncrementalPdfFileWriter(pdf_in, strict=False)
        encrypted = writer.prev.encrypted
        writer.root  # noqa: B018 - the catalog must be a dictionary: fail here, not halfway through
    if encrypted:
        raise InvalidDocument("the PDF is encrypted; kyso signs only unencrypted PDFs")
    return writer


def new_field(writer: IncrementalPdfFileWriter, field_name: str, page: int | None,
              box: tuple[float, float, float, float] | None, stamped: bool,
              existing: dict[str, object]) -> SigFieldSpec | None:
    """Where a field the document lacks goes: on the page and in the box asked for (inside the page),
    or nowhere (invisible) when no stamp was asked for either."""
    if field_name in existing:
        if box is not None:
            raise InvalidFieldPlace(f"field {field_name!r} exists: its place is the document's, "
                                   "a page and box are only for a new field")
        return None
    if box is None:
        if stamped:
            raise InvalidFieldPlace(f"the document has no field {field_name!r}: a visible stamp needs "
                                   "the page and box of the field to create")
        return None
    assert page is not None
    with reading("cannot read this PDF's pages"):
        pages = int(writer.prev.root["/Pages"]["/Count"])
        if not 1 <= page <= pages:
            raise InvalidFieldPlace(f"page {page} is not in the document ({pages} pages)")
        media = _media_box(writer.prev.find_page_for_modification(page - 1)[0])
    x1, y1, x2, y2 = box
    if x1 < media[0] or y1 < media[1] or x2 > media[2] or y2 > media[3]:
        raise InvalidFieldPlace(f"the box {tuple(box)} is not inside page {page} "
                               f"({media[2] - media[0]:.0f} × {media[3] - media[1]:.0f} points)")
    return SigFieldSpec(sig_field_name=field_name, on_page=page - 1, box=(int(x1), int(y1), int(x2), int(y2)))


def _media_box(page: Any) -> list[float]:
    """A page's MediaBox, inherited from the page tree when the page has none of its own."""
    node = page.get_object() if hasattr(page, "get_object") else page
    for _ in range(64):  # a page tree deeper than this is a loop
        if "/MediaBox" in node:
            return [float(v) for v in node["/MediaBox"]]
        if "/Parent" not in node:
            break
        node = node["/Parent"].get_object() if hasattr(node["/Parent"], "get_object") else node["/Parent"]
    raise InvalidDocument("a page has no MediaBox")


def add_signature_fields(input_path: Path, output_path: Path, specs: Sequence[FieldSpec]) -> None:
    """Add empty signature fields in one incremental update."""
    with input_path.open("rb") as pdf_in, reading("cannot add fields to this PDF"):
        writer = open_for_update(pdf_in)
        existing = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
        for spec in specs:
            if spec.name in existing:
                raise InvalidDocument(f"the PDF already has a field named {spec.name!r}")
            lock = FieldMDPSpec(FieldMDPAction.INCLUDE, fields=[spec.name]) if spec.lock_self else None
            fields.append_signature_field(
                writer,
                SigFieldSpec(sig_field_name=spec.name, on_page=spec.page, box=spec.box, field_mdp_spec=lock),
            )
        with output_path.open("wb") as out:
            writer.write(out)
