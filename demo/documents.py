"""Sample documents: a treasury payment order (PDF) and an XML payment file.

The payment order gets its two signature fields before anyone signs (never reuse a field):
the chief accountant's field, locked once signed, and the account holder's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fpdf import FPDF

from signer.pades import VIETNAMESE_FONT, FieldSpec, add_signature_fields

CHIEF_ACCOUNTANT_FIELD = "KeToanTruong"
ACCOUNT_HOLDER_FIELD = "ChuTaiKhoan"

# Field boxes in PDF points (origin bottom left) on an A4 page.
CHIEF_ACCOUNTANT_BOX = (50, 250, 290, 330)
ACCOUNT_HOLDER_BOX = (310, 250, 550, 330)

PAYMENT_ORDER = {
    "number": "UNC-2026-000123",
    "payer": "Trường Tiểu học Nguyễn Trãi — mã ĐVQHNS 1012345",
    "payer_account": "9523.1.1012345 tại KBNN Hà Nội",
    "payee": "Công ty TNHH Thiết bị Giáo dục Việt Hưng",
    "payee_account": "0011004567890 tại Vietcombank Hà Nội",
    "amount": "125.000.000 VND",
    "amount_words": "Một trăm hai mươi lăm triệu đồng chẵn",
    "purpose": "Thanh toán hợp đồng mua sắm bàn ghế học sinh số 15/2026/HĐ",
}


def write_payment_order_pdf(path: Path, order: dict[str, str] = PAYMENT_ORDER) -> None:
    """A one-page payment order with empty fields for both signers."""
    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", fname=str(VIETNAMESE_FONT))
    pdf.add_page()
    pdf.set_font("DejaVu", size=15)
    pdf.cell(0, 10, "GIẤY RÚT DỰ TOÁN / ỦY NHIỆM CHI", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=10)
    pdf.cell(0, 6, f"Số: {order['number']}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    rows = [
        ("Đơn vị trả tiền", order["payer"]),
        ("Tài khoản", order["payer_account"]),
        ("Đơn vị nhận tiền", order["payee"]),
        ("Tài khoản", order["payee_account"]),
        ("Số tiền", order["amount"]),
        ("Bằng chữ", order["amount_words"]),
        ("Nội dung", order["purpose"]),
    ]
    for label, value in rows:
        pdf.set_font("DejaVu", size=10)
        pdf.cell(45, 8, f"{label}:")
        pdf.multi_cell(0, 8, value, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(-125)
    pdf.cell(95, 6, "KẾ TOÁN TRƯỞNG", align="C")
    pdf.cell(95, 6, "CHỦ TÀI KHOẢN", align="C", new_x="LMARGIN", new_y="NEXT")
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


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "payment-order.pdf")
    write_payment_order_pdf(out)
    print(out)
