"""Hostile PDFs and stamp templates: each is refused with a signer error, never an unexpected exception."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.runtime import Runtime
from signer import InvalidDocument, KeySigner, SignerError, pades, pdf_fields
from signer.stamp import DEFAULT_STAMP
from tests.conftest import Enrolled
from tests.support import key_signer


def build_pdf(*objects: bytes) -> bytes:
    """A PDF with a correct cross-reference table around ``objects`` (object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"
DEEP = b"[" * 5000 + b"]" * 5000

MALFORMED = {
    "no /Pages": build_pdf(b"<< /Type /Catalog >>"),
    "catalog is an array": build_pdf(b"[1 2 3]"),
    "catalog is a number": build_pdf(b"42"),
    "page tree is a string": build_pdf(CATALOG, b"(pages)"),
    "page tree without /Kids": build_pdf(CATALOG, b"<< /Type /Pages /Count 1 >>"),
    "page tree loop": build_pdf(CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"),
    "deeply nested arrays": build_pdf(CATALOG, PAGES, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /X "
                                      + DEEP + b" >>"),
    "AcroForm loop": build_pdf(b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R] >> >>", PAGES, PAGE,
                               b"<< /T (a) /Kids [4 0 R] >>"),
    "AcroForm is a number": build_pdf(b"<< /Type /Catalog /Pages 2 0 R /AcroForm 7 >>", PAGES, PAGE),
    "AcroForm fields not an array": build_pdf(b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields 5 >> >>",
                                              PAGES, PAGE),
}


@pytest.fixture(scope="module")
def key(runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, enrolled.ec)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_pdf_is_an_invalid_document(name: str, key: KeySigner, tmp_path: Path) -> None:
    source = tmp_path / "in.pdf"
    source.write_bytes(MALFORMED[name])
    out = tmp_path / "out.pdf"
    with pytest.raises(InvalidDocument) as refused:
        pades.prepare(key.certificate, key.chain, key.scheme, key.signature_size(), source, out,
                      pades.PadesOptions("Signature1"))
    assert refused.value.code == "invalid_document" and len(refused.value.message) < 300
    assert not out.exists() and not out.with_name(out.name + ".part").exists()  # nothing half-written
    with pytest.raises(InvalidDocument):
        pdf_fields.add_signature_fields(source, tmp_path / "fields.pdf", [pdf_fields.FieldSpec("Signature1")])


def test_a_well_formed_minimal_pdf_still_signs(key: KeySigner, tmp_path: Path) -> None:
    source = tmp_path / "in.pdf"
    source.write_bytes(build_pdf(CATALOG, PAGES, PAGE))
    pades.sign(key, source, tmp_path / "out.pdf", pades.PadesOptions("Signature1", stamp_text="100%% %(signer)s", page=1,
                                                                 box=(50, 50, 200, 100)))
    assert (tmp_path / "out.pdf").stat().st_size > source.stat().st_size


@pytest.mark.parametrize("stamp", ["%(signer)2000000s", "%d", "%(signer)r", "%(other)s", "100%", "%%(ts)s%",
                                   "x" * 201, "%(signer)s" * 5])
def test_a_stamp_is_a_template_not_a_format_string(stamp: str) -> None:
    started = time.monotonic()
    with pytest.raises(SignerError) as refused:
        pades.PadesOptions("Signature1", stamp_text=stamp)
    assert refused.value.code == "invalid_stamp" and time.monotonic() - started < 0.1


@pytest.mark.parametrize("stamp", [DEFAULT_STAMP, "KẾ TOÁN TRƯỞNG\n%(signer)s", "100%% %(ts)s", "x" * 200])
def test_the_documented_placeholders_are_accepted(stamp: str) -> None:
    assert pades.PadesOptions("Signature1", stamp_text=stamp).stamp_text == stamp
