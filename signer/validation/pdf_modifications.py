"""What changed in a PDF after a signature: the modification level against its DocMDP and field locks,
and the pages those later revisions touch."""

from __future__ import annotations

from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.validation import EmbeddedPdfSignature

from signer.validation_report import Modifications

MAX_PAGES_WALKED = 10_000


def modifications(sig: EmbeddedPdfSignature, reader: PdfFileReader) -> Modifications:
    diff = sig.diff_result
    docmdp = sig.docmdp_level
    fieldmdp = sig.fieldmdp
    later = reader.xrefs.total_revisions - 1 - sig.signed_revision
    if isinstance(diff, SuspiciousModification):
        level, changed, detail = ModificationLevel.OTHER, [], str(diff)[:300]
    elif diff is not None:
        level, changed, detail = diff.modification_level, sorted(diff.changed_form_fields), None
    else:
        level, changed, detail = ModificationLevel.NONE, [], None
    allowed = not (level is ModificationLevel.OTHER or (docmdp is not None and level.value > docmdp.value))
    locked = None
    if fieldmdp is not None:
        locked = list(fieldmdp.fields or []) if fieldmdp.action.name != "ALL" else ["(all fields)"]
    try:
        pages = _pages_touched(reader, sig.signed_revision)
    except Exception:  # noqa: BLE001 - a page tree too odd to walk: the level above still stands
        pages = []
    return Modifications(level=level.name, allowed=allowed, docmdp=docmdp.name if docmdp else None,
                         locked_fields=locked, later_revisions=later, pages_touched=pages, fields_changed=changed,
                         detail=detail)


def _page_refs(resolver: Any) -> list[generic.Reference]:
    """The page objects' references in order, walking /Kids without recursion and with a bound."""
    root = resolver.root if hasattr(resolver, "root") else resolver.trailer_view["/Root"]
    pages_ref = root.raw_get("/Pages")
    out: list[generic.Reference] = []
    stack = [pages_ref]
    seen: set[Any] = set()
    while stack and len(seen) < MAX_PAGES_WALKED:
        ref = stack.pop()
        key = ref.reference if isinstance(ref, generic.IndirectObject) else id(ref)
        if key in seen:
            continue
        seen.add(key)
        node = ref.get_object()
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            stack.extend(reversed(list(node.raw_get("/Kids"))))
        elif isinstance(ref, generic.IndirectObject):
            out.append(ref.reference)
    return out


def _pages_touched(reader: PdfFileReader, signed_revision: int) -> list[int]:
    total = reader.xrefs.total_revisions
    if signed_revision >= total - 1:
        return []
    before = set(_page_refs(reader.get_historical_resolver(signed_revision)))
    changed: set[generic.Reference] = set()
    for revision in range(signed_revision + 1, total):
        changed.update(reader.xrefs.explicit_refs_in_revision(revision))
    touched = []
    for number, ref in enumerate(_page_refs(reader), start=1):
        page = ref.get_object()
        related = {ref}
        for key in ("/Contents", "/Annots", "/Resources"):
            value = page.raw_get(key) if key in page else None
            if isinstance(value, generic.IndirectObject):
                related.add(value.reference)
                value = value.get_object()
            if isinstance(value, generic.ArrayObject) and key != "/Resources":
                related.update(v.reference for v in value if isinstance(v, generic.IndirectObject))
        if ref not in before or related & changed:
            touched.append(number)
    return touched
