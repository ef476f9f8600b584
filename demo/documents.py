"""Sample documents: a treasury payment order (PDF) and an XML payment file.

The payment order gets its two signature fields before anyone signs (never reuse a field):
the chief accountant's field, locked once signed, and the account holder's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fpdf import FPDF

from signer.pdf_fields import FieldSpec, add_signature_fields
from signer.stamp import VIETNAMESE_FONT

CHIEF_ACCOUNTANT_FIELD = "KeToanTruong"
ACCOUNT_HOLDER_FIELD = "ChuTaiKhoan"

# Field boxes in PDF points (origin bottom left) on an A4 page.
CHIEF_ACCOUNTANT_BOX = (50, 250, 290, 330)
ACCOUNT_HOLDER_BOX = (310, 250, 550, 330)

PAYMENT_ORDER = {
    "number": "UNC-2026-000123",
    "date": "2026-03-16",
    "payer": "Trường Tiểu học Thử Nghiệm",
    "payer_code": "1012345",
    "payer_account": "9523.1.1012345",
    "payer_treasury": "Hà Nội",
    "payee": "Công ty TNHH Thiết bị Giáo dục Việt Hưng",
    "payee_account": "0011004567890",
    "payee_bank": "Vietcombank — Chi nhánh Hà Nội",
    "amount": "125.000.000 VND",
    "amount_words": "Một trăm hai mươi lăm triệu đồng chẵn",
    "purpose": "Thanh toán hợp đồng mua sắm bàn ghế học sinh số 15/2026/HĐ",
    "expense_code": "9099",
    "chapter_code": "622",
    "sector_code": "072",
    "fund_code": "12",
}
"""The sample order. The payer is the sandbox's unit, the one its signers' certificates name; the
budget codes (content, chapter, sector, fund) are illustrative."""

FORM_CODE = "C2-02a/NS"

_PT = 25.4 / 72  # millimetres per point
_PAGE_H = 297.0  # A4, mm
_LEFT, _WIDTH = 12.0, 186.0  # the form's frame, mm


def _box_mm(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """A field box (points, origin bottom left) as x, y, w, h in mm from the top left."""
    x1, y1, x2, y2 = box
    return x1 * _PT, _PAGE_H - y2 * _PT, (x2 - x1) * _PT, (y2 - y1) * _PT


def _checkbox(pdf: FPDF, label: str, ticked: bool) -> None:
    x, y = pdf.get_x(), pdf.get_y()
    pdf.rect(x, y + 1, 3.2, 3.2)
    if ticked:
        pdf.line(x + 0.6, y + 1.6, x + 2.6, y + 3.6)
        pdf.line(x + 2.6, y + 1.6, x + 0.6, y + 3.6)
    pdf.set_x(x + 4.5)
    pdf.cell(pdf.get_string_width(label) + 8, 5.2, label)


def _labelled(pdf: FPDF, label: str, value: str, width: float = 0, bold: bool = False) -> None:
    """``label: value`` on the current line; ``width`` 0 ends the line."""
    pdf.set_font("DejaVu", size=10)
    label_w = pdf.get_string_width(f"{label}: ") + 0.5
    pdf.cell(label_w, 7.5, f"{label}: ")
    pdf.set_font("DejaVu", "B" if bold else "", 10)
    if width:
        pdf.cell(width - label_w, 7.5, value)
    else:
        pdf.cell(0, 7.5, value, new_x="LMARGIN", new_y="NEXT")


def write_payment_order_pdf(path: Path, order: dict[str, str] = PAYMENT_ORDER) -> None:
    """The treasury's budget withdrawal form (one A4 page) with empty fields for both signers."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(_LEFT, 10, 210 - _LEFT - _WIDTH)
    for style, face in (("", VIETNAMESE_FONT), ("B", VIETNAMESE_FONT.with_name("DejaVuSans-Bold.ttf")),
                        ("I", VIETNAMESE_FONT.with_name("DejaVuSans-Oblique.ttf"))):
        pdf.add_font("DejaVu", style, fname=str(face if face.exists() else VIETNAMESE_FONT))
    pdf.add_page()
    pdf.set_line_width(0.2)
    right = _LEFT + _WIDTH
    year, month, day = order["date"].split("-")

    # Heading: the treasury's own corner, the form code and number, the title and its options.
    pdf.rect(_LEFT, 10, 46, 13)
    pdf.set_xy(_LEFT, 12)
    pdf.set_font("DejaVu", "I", 7.5)
    pdf.multi_cell(46, 4, "Không ghi vào\nkhu vực này", align="C")
    pdf.set_xy(right - 60, 10)
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.cell(60, 5, f"Mẫu số {FORM_CODE}", align="R", new_x="LEFT", new_y="NEXT")
    pdf.set_font("DejaVu", size=9.5)
    pdf.cell(60, 5, f"Số: {order['number']}", align="R", new_x="LEFT", new_y="NEXT")
    pdf.set_font("DejaVu", "I", 9.5)
    pdf.cell(60, 5, f"Ngày {day} tháng {month} năm {year}", align="R")
    pdf.set_xy(_LEFT, 27)
    pdf.set_font("DejaVu", "B", 14)
    pdf.cell(_WIDTH, 8, "GIẤY RÚT DỰ TOÁN NGÂN SÁCH", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=9.5)
    pdf.set_x(_LEFT + 38)
    _checkbox(pdf, "Thực chi", True)
    _checkbox(pdf, "Tạm ứng", False)
    pdf.set_x(pdf.get_x() + 6)
    _checkbox(pdf, "Chuyển khoản", True)
    _checkbox(pdf, "Tiền mặt", False)

    # The payer: the budget-using unit and its budget estimate account at the treasury.
    pdf.set_xy(_LEFT, 47)
    _labelled(pdf, "Đơn vị rút dự toán", order["payer"], bold=True)
    _labelled(pdf, "Mã ĐVQHNS", order["payer_code"])
    _labelled(pdf, "Tài khoản", order["payer_account"], width=70)
    _labelled(pdf, "Tại KBNN", order["payer_treasury"])
    _labelled(pdf, "Mã CTMT, DA", "……………………", width=70)
    _labelled(pdf, "Số CKC, HĐK", "……………………")

    # The budget codes and the amount.
    columns = [("Nội dung thanh toán", 62), ("Mã NDKT", 17), ("Mã chương", 19), ("Mã ngành KT", 23),
               ("Mã nguồn NSNN", 28), ("Số tiền", 37)]
    amount = order["amount"].removesuffix(" VND")
    pdf.set_y(pdf.get_y() + 4)
    pdf.set_font("DejaVu", "B", 8)
    pdf.set_fill_color(236, 236, 236)
    for caption, width in columns:
        pdf.cell(width, 8, caption, border=1, align="C", fill=True)
    pdf.ln(8)
    pdf.set_font("DejaVu", size=9.5)
    top = pdf.get_y()
    lines = pdf.multi_cell(columns[0][1] - 2, 5, order["purpose"], dry_run=True, output="LINES")
    height = max(len(lines) * 5 + 4, 10)
    pdf.set_xy(_LEFT + 1, top + 2)
    pdf.multi_cell(columns[0][1] - 2, 5, order["purpose"], align="L")
    pdf.rect(_LEFT, top, columns[0][1], height)
    x = _LEFT + columns[0][1]
    for (_, width), value in zip(columns[1:], (order["expense_code"], order["chapter_code"],
                                              order["sector_code"], order["fund_code"], amount)):
        pdf.set_xy(x, top)
        pdf.cell(width, height, value, border=1, align="R" if width == columns[-1][1] else "C")
        x += width
    pdf.set_xy(_LEFT, top + height)
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.cell(_WIDTH - columns[-1][1], 8, "Tổng cộng", border=1, align="C")
    pdf.cell(columns[-1][1], 8, amount, border=1, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    _labelled(pdf, "Tổng số tiền ghi bằng chữ", order["amount_words"])

    # The payee.
    pdf.ln(4)
    _labelled(pdf, "Đơn vị nhận tiền", order["payee"], bold=True)
    _labelled(pdf, "Tài khoản", order["payee_account"], width=70)
    _labelled(pdf, "Tại KBNN (NH)", order["payee_bank"])

    # The unit's signatures: a caption over each field box, the box itself left empty for the stamp.
    chief, holder = _box_mm(CHIEF_ACCOUNTANT_BOX), _box_mm(ACCOUNT_HOLDER_BOX)
    pdf.set_xy(_LEFT, chief[1] - 15)
    pdf.set_font("DejaVu", "B", 9.5)
    pdf.cell(_WIDTH, 5, "ĐƠN VỊ SỬ DỤNG NGÂN SÁCH", align="C")
    for (x, y, w, h), caption in ((chief, "KẾ TOÁN TRƯỞNG"), (holder, "THỦ TRƯỞNG ĐƠN VỊ / CHỦ TÀI KHOẢN")):
        pdf.set_xy(x, y - 6.5)
        pdf.set_font("DejaVu", "B", 9)
        pdf.cell(w, 5, caption, align="C")
        pdf.set_draw_color(150, 150, 150)
        pdf.rect(x, y, w, h)
        pdf.set_draw_color(0, 0, 0)

    # The treasury's part, filled in by the treasury.
    top = chief[1] + chief[3] + 5
    pdf.line(_LEFT, top, right, top)
    pdf.set_xy(_LEFT, top + 2)
    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(_WIDTH, 6, "PHẦN DO KBNN GHI", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    dots = "……………………"
    _labelled(pdf, "Nợ TK", dots, width=62)
    _labelled(pdf, "Có TK", dots, width=62)
    _labelled(pdf, "Mã ĐBHC", dots)
    pdf.ln(2)
    pdf.set_font("DejaVu", "I", 9.5)
    pdf.cell(_WIDTH, 5, "Ngày …… tháng …… năm ……", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 9)
    for caption in ("KẾ TOÁN", "KẾ TOÁN TRƯỞNG", "GIÁM ĐỐC KBNN"):
        pdf.cell(_WIDTH / 3, 6, caption, align="C")
    pdf.rect(_LEFT, top, _WIDTH, 287 - top)

    with tempfile.TemporaryDirectory() as tmp:
        unsigned = Path(tmp) / "order.pdf"
        pdf.output(str(unsigned))
        add_signature_fields(
            unsigned,
            path,
            [
                FieldSpec(CHIEF_ACCOUNTANT_FIELD, box=CHIEF_ACCOUNTANT_BOX, lock_self=True),
                FieldSpec(ACCOUNT_HOLDER_FIELD, box=ACCOUNT_HOLDER_BOX),
            ],
        )


def payment_xml(order: dict[str, str] = PAYMENT_ORDER) -> bytes:
    """The same order as the XML a DVC portal would send."""
    from xml.sax.saxutils import escape

    fields = "".join(f"  <{k}>{escape(v)}</{k}>\n" for k, v in order.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<PaymentOrder>\n{fields}</PaymentOrder>\n'.encode()


XML_DATA_ID = "DLieu"
"""The Id of the payment order's data element in its XML: what each signer's XAdES signature covers."""
XML_TAGS = {"number": "SoCT", "date": "NgayCT", "payer": "DVTraTien", "payer_code": "MaDVQHNS",
            "payer_account": "TKTra", "payer_treasury": "KBNNTra", "payee": "DVNhanTien", "payee_account": "TKNhan",
            "payee_bank": "NHNhan", "amount": "SoTien", "amount_words": "BangChu", "purpose": "NoiDung",
            "expense_code": "MaNDKT", "chapter_code": "MaChuong", "sector_code": "MaNganhKT", "fund_code": "MaNguonNSNN"}
XML_CHIEF_ACCOUNTANT_PLACEMENT = "/Hoso/CKy_Dvi/KeToanTruong"
XML_ACCOUNT_HOLDER_PLACEMENT = "/Hoso/CKy_Dvi/ChuTaiKhoan"


def payment_order_xml(order: dict[str, str] = PAYMENT_ORDER) -> bytes:
    """The order as the treasury's XML documents carry it: the data by Id, and a container per signer."""
    from xml.sax.saxutils import escape

    fields = "".join(f"    <{XML_TAGS.get(k, k)}>{escape(v)}</{XML_TAGS.get(k, k)}>\n" for k, v in order.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Hoso>\n  <TTinChung><PBan>2.0.1</PBan></TTinChung>\n'
            f'  <{XML_DATA_ID} Id="{XML_DATA_ID}">\n{fields}  </{XML_DATA_ID}>\n'
            f'  <CKy_Dvi>\n    <KeToanTruong/>\n    <ChuTaiKhoan/>\n  </CKy_Dvi>\n</Hoso>\n').encode()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "payment-order.pdf")
    write_payment_order_pdf(out)
    print(out)
