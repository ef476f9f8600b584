"""A visible signature on a field the document lacks needs a place: a page and a box, inside the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from fpdf import FPDF
from pyhanko.pdf_utils.reader import PdfFileReader

from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from signer import pipeline
from signer.errors import InvalidFieldPlace
from signer.keysigner import KeySigner
from signer.pades import PadesOptions
from tests.conftest import Enrolled
from tests.support import key_signer


@pytest.fixture(scope="module")
def key(runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, enrolled.ec)


def plain_pdf(path: Path, pages: int = 2) -> Path:
    pdf = FPDF(format="A4")
    for n in range(pages):
        pdf.add_page()
        pdf.set_font("helvetica", size=14)
        pdf.cell(0, 10, f"page {n + 1}")
    pdf.output(str(path))
    return path


def widget_rect(path: Path, field: str) -> tuple[int, list[float]]:
    with path.open("rb") as fh:
        reader = PdfFileReader(fh, strict=False)
        for n in range(int(reader.root["/Pages"]["/Count"])):
            page = reader.find_page_for_modification(n)[0].get_object()
            for annot in page.get("/Annots", []):
                annot = annot.get_object()
                if annot.get("/T") == field:
                    return n + 1, [float(v) for v in annot["/Rect"]]
    raise AssertionError(f"no widget for {field}")


def test_a_new_field_goes_where_it_is_asked(key: KeySigner, tmp_path: Path) -> None:
    spec = pipeline.PadesSpec("DuyetChi", stamp_text="Ký bởi: %(signer)s", signer_name="Trần Văn Hùng", page=2,
                              box=(300, 100, 540, 180))
    output, _ = pipeline.sign(key, spec, plain_pdf(tmp_path / "in.pdf"), tmp_path / "out.pdf")
    assert widget_rect(output.output, "DuyetChi") == (2, [300.0, 100.0, 540.0, 180.0])


def test_an_invisible_signature_needs_no_place(key: KeySigner, tmp_path: Path) -> None:
    pipeline.sign(key, pipeline.PadesSpec("An"), plain_pdf(tmp_path / "in.pdf"), tmp_path / "out.pdf")
    assert (tmp_path / "out.pdf").is_file()


@pytest.mark.parametrize(("spec", "why"), [
    (pipeline.PadesSpec("Moi", stamp_text="Ký bởi: %(signer)s"), "needs the page and box"),
    (pipeline.PadesSpec("Moi", page=3, box=(50, 50, 200, 100)), "is not in the document"),
    (pipeline.PadesSpec("Moi", page=1, box=(400, 700, 700, 900)), "not inside page 1"),
    (pipeline.PadesSpec(CHIEF_ACCOUNTANT_FIELD, page=1, box=(50, 50, 200, 100)), "exists"),
])
def test_a_stamp_without_a_place_is_refused_and_nothing_is_written(key: KeySigner, tmp_path: Path,
                                                                   spec: pipeline.PadesSpec, why: str) -> None:
    source = tmp_path / "in.pdf"
    if spec.field_name == CHIEF_ACCOUNTANT_FIELD:
        write_payment_order_pdf(source)
    else:
        plain_pdf(source)
    with pytest.raises(InvalidFieldPlace, match=why):
        pipeline.sign(key, spec, source, tmp_path / "out.pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.pdf"]


@pytest.mark.parametrize("box", [(10, 10, 20, 20), (100, 100, 50, 200), (-1, 0, 100, 100)])
def test_malformed_boxes_are_refused(box: tuple[float, float, float, float]) -> None:
    with pytest.raises(InvalidFieldPlace):
        PadesOptions("X", page=1, box=box)


def test_stamp_times_are_vietnam_time_whatever_the_servers_zone(key: KeySigner, tmp_path: Path) -> None:
    import subprocess
    from datetime import datetime, timezone

    from signer.stamp import stamp_time
    from tests.support import require_tool

    assert stamp_time(datetime(2026, 3, 16, 20, 30, tzinfo=timezone.utc)) == "17/03/2026 03:30:00 (UTC+07:00)"
    spec = pipeline.PadesSpec("Ngay", stamp_text="Ngày ký: %(ts)s", signer_name="Trần Văn Hùng", page=1,
                              box=(50, 50, 350, 120))
    pending, _ = pipeline.sign(key, spec, plain_pdf(tmp_path / "in.pdf", pages=1), tmp_path / "out.pdf")
    text = subprocess.run([require_tool("pdftotext"), str(pending.output), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Ngày ký:" in text and "(UTC+07:00)" in text, text
