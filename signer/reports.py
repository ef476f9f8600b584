"""Human validation reports, Vietnamese or English: HTML (every value escaped) and PDF (fpdf2, DejaVu Sans).

Both render a ``ValidationReport`` and nothing else: what a treasury officer keeps on file as the
reason a document was accepted or refused.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from signer.validation_report import Indication, SignatureVerdict, ValidationReport

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
LANGUAGES = ("vi", "en")

_TEXT: dict[str, dict[str, str]] = {
    "title": {"vi": "Báo cáo kiểm tra chữ ký số", "en": "Signature validation report"},
    "document": {"vi": "Tài liệu", "en": "Document"},
    "format": {"vi": "Định dạng", "en": "Format"},
    "size": {"vi": "Kích thước", "en": "Size"},
    "bytes": {"vi": "byte", "en": "bytes"},
    "content": {"vi": "Nội dung tách rời (SHA-256)", "en": "Detached content (SHA-256)"},
    "validation_time": {"vi": "Thời điểm kiểm tra", "en": "Validation time"},
    "now": {"vi": "(hiện tại)", "en": "(current time)"},
    "trust_store": {"vi": "Kho tin cậy", "en": "Trust store"},
    "fetching": {"vi": "Tải dữ liệu thu hồi trực tuyến", "en": "Online revocation fetching"},
    "yes": {"vi": "có", "en": "yes"},
    "no": {"vi": "không", "en": "no"},
    "overall": {"vi": "Kết luận chung", "en": "Overall"},
    "signature": {"vi": "Chữ ký", "en": "Signature"},
    "indication": {"vi": "Kết quả", "en": "Indication"},
    "sub_indication": {"vi": "Chỉ dẫn phụ", "en": "Sub-indication"},
    "why": {"vi": "Lý do", "en": "Why"},
    "signer": {"vi": "Người ký", "en": "Signer"},
    "claimed_time": {"vi": "Thời điểm ký (người ký khai)", "en": "Claimed signing time"},
    "proven_time": {"vi": "Thời điểm ký (được chứng minh)", "en": "Proven signing time"},
    "none_proven": {"vi": "không có bằng chứng trước thời điểm kiểm tra",
                    "en": "no proof before the validation time"},
    "level": {"vi": "Mức cơ sở", "en": "Baseline level"},
    "not_baseline": {"vi": "không theo chuẩn cơ sở", "en": "not a baseline signature"},
    "algorithms": {"vi": "Thuật toán", "en": "Algorithms"},
    "chain": {"vi": "Chuỗi chứng thư", "en": "Certificate chain"},
    "anchor": {"vi": "gốc tin cậy", "en": "trust anchor"},
    "valid_from_to": {"vi": "hiệu lực", "en": "valid"},
    "revocation": {"vi": "Dữ liệu thu hồi đã dùng", "en": "Revocation data used"},
    "embedded": {"vi": "nhúng trong tài liệu", "en": "embedded"},
    "fetched": {"vi": "tải trực tuyến", "en": "fetched"},
    "timestamps": {"vi": "Dấu thời gian", "en": "Timestamps"},
    "modifications": {"vi": "Thay đổi sau khi ký", "en": "Changes after signing"},
    "mod_level": {"vi": "Mức thay đổi", "en": "Modification level"},
    "allowed": {"vi": "được phép", "en": "allowed"},
    "not_allowed": {"vi": "KHÔNG được phép", "en": "NOT allowed"},
    "later_revisions": {"vi": "Số phiên bản sau chữ ký", "en": "Later revisions"},
    "pages": {"vi": "Trang bị tác động", "en": "Pages touched"},
    "fields": {"vi": "Trường biểu mẫu đã đổi", "en": "Form fields changed"},
    "docmdp": {"vi": "Chứng nhận (DocMDP)", "en": "Certification (DocMDP)"},
    "fieldmdp": {"vi": "Trường bị khoá (FieldMDP)", "en": "Locked fields (FieldMDP)"},
    "nothing": {"vi": "không có", "en": "none"},
    "generated": {"vi": "Lập lúc", "en": "Generated"},
    "by_standard": {"vi": "Kết quả theo ETSI EN 319 102-1 / TS 119 102-2.",
                    "en": "Indications per ETSI EN 319 102-1 / TS 119 102-2."},
}

INDICATIONS = {
    Indication.TOTAL_PASSED: {"vi": "HỢP LỆ", "en": "PASSED"},
    Indication.TOTAL_FAILED: {"vi": "KHÔNG HỢP LỆ", "en": "FAILED"},
    Indication.INDETERMINATE: {"vi": "CHƯA XÁC ĐỊNH", "en": "INDETERMINATE"},
}

SUB_INDICATIONS_VI = {
    "HASH_FAILURE": "dữ liệu đã bị thay đổi sau khi ký: giá trị băm không khớp",
    "SIG_CRYPTO_FAILURE": "giá trị chữ ký không kiểm tra được bằng khoá công khai của người ký",
    "REVOKED": "chứng thư của người ký đã bị thu hồi trước thời điểm ký được chứng minh",
    "FORMAT_FAILURE": "chữ ký không đúng cấu trúc của định dạng",
    "SIG_CONSTRAINTS_FAILURE": "chữ ký vi phạm ràng buộc của chính sách kiểm tra (vd. tài liệu bị sửa sau khi ký)",
    "CHAIN_CONSTRAINTS_FAILURE": "chuỗi chứng thư vi phạm ràng buộc (mục đích khoá, độ dài, chính sách)",
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": "không kiểm tra được chuỗi chứng thư",
    "CRYPTO_CONSTRAINTS_FAILURE": "thuật toán hoặc độ dài khoá không được chấp nhận",
    "EXPIRED": "chứng thư đã hết hạn trước thời điểm ký",
    "NOT_YET_VALID": "chứng thư chưa có hiệu lực tại thời điểm ký",
    "NO_SIGNING_CERTIFICATE_FOUND": "không tìm thấy chứng thư của người ký",
    "NO_CERTIFICATE_CHAIN_FOUND": "không có chuỗi từ chứng thư người ký tới một gốc tin cậy",
    "REVOKED_NO_POE": "chứng thư đã bị thu hồi và không có bằng chứng chữ ký tồn tại trước khi thu hồi",
    "REVOKED_CA_NO_POE": "một chứng thư CA trong chuỗi đã bị thu hồi, không có bằng chứng tồn tại trước đó",
    "OUT_OF_BOUNDS_NO_POE": "chứng thư hết hạn (hoặc chưa hiệu lực) và không có dấu thời gian chứng minh "
                            "chữ ký tồn tại khi chứng thư còn hiệu lực",
    "OUT_OF_BOUNDS_NOT_REVOKED": "chứng thư hết hạn, không bị thu hồi, nhưng không có bằng chứng thời điểm ký",
    "TRY_LATER": "thiếu dữ liệu thu hồi (OCSP/CRL) cho một chứng thư trong chuỗi: nhúng vào, cho phép tải, "
                 "hoặc thử lại sau",
    "NO_POE": "không có bằng chứng chữ ký tồn tại vào thời điểm cần thiết",
    "TIMESTAMP_ORDER_FAILURE": "các dấu thời gian không đúng thứ tự",
}


def _t(key: str, lang: str) -> str:
    return _TEXT[key][lang]


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _explain(verdict: SignatureVerdict, lang: str) -> list[str]:
    """The reasons; in Vietnamese the sub-indication's own explanation leads, the details follow as found."""
    if lang == "vi" and verdict.sub_indication in SUB_INDICATIONS_VI:
        return [SUB_INDICATIONS_VI[verdict.sub_indication], *verdict.reasons[1:]]
    return list(verdict.reasons)


def _facts(verdict: SignatureVerdict, lang: str) -> list[tuple[str, str]]:
    rows = [
        (_t("signer", lang), verdict.signer),
        (_t("claimed_time", lang), _when(verdict.claimed_signing_time)),
        (_t("proven_time", lang), _when(verdict.proven_signing_time) if verdict.proven_signing_time
         else _t("none_proven", lang)),
        (_t("level", lang), verdict.level or _t("not_baseline", lang)),
        (_t("algorithms", lang), " / ".join(x for x in (verdict.digest_algorithm, verdict.signature_algorithm) if x)
         or "—"),
    ]
    return rows


def _chain_lines(verdict: SignatureVerdict, lang: str) -> list[str]:
    return [f"{c.subject} — {_t('valid_from_to', lang)} {_when(c.not_before)} → {_when(c.not_after)}"
            + (f" ({_t('anchor', lang)})" if c.trust_anchor else "") for c in verdict.chain]


def _revocation_lines(verdict: SignatureVerdict, lang: str) -> list[str]:
    return [f"{r.kind} — {r.issuer} — {_when(r.issued_at)} — {_t(r.source, lang) if r.source else ''}"
            for r in verdict.revocation]


def _timestamp_lines(verdict: SignatureVerdict, lang: str) -> list[str]:
    return [f"{t.kind}: {_when(t.time)} — {t.tsa} — {INDICATIONS[t.indication][lang]}"
            + (f" / {t.sub_indication}" if t.sub_indication else "") for t in verdict.timestamps]


def _modification_rows(verdict: SignatureVerdict, lang: str) -> list[tuple[str, str]]:
    mods = verdict.modifications
    if mods is None:
        return []
    return [
        (_t("mod_level", lang), f"{mods.level} ({_t('allowed' if mods.allowed else 'not_allowed', lang)})"
         + (f": {mods.detail}" if mods.detail else "")),
        (_t("later_revisions", lang), str(mods.later_revisions)),
        (_t("pages", lang), ", ".join(map(str, mods.pages_touched)) or _t("nothing", lang)),
        (_t("fields", lang), ", ".join(mods.fields_changed) or _t("nothing", lang)),
        (_t("docmdp", lang), mods.docmdp or _t("nothing", lang)),
        (_t("fieldmdp", lang), ", ".join(mods.locked_fields) if mods.locked_fields else _t("nothing", lang)),
    ]


def _header_rows(report: ValidationReport, lang: str) -> list[tuple[str, str]]:
    policy = report.policy
    rows = [
        (_t("document", lang), report.document),
        (_t("format", lang), report.format),
        ("SHA-256", report.sha256),
        (_t("size", lang), f"{report.size:,} {_t('bytes', lang)}"),
    ]
    if report.detached_content_sha256:
        rows.append((_t("content", lang), report.detached_content_sha256))
    rows += [
        (_t("validation_time", lang), _when(policy.validation_time) + (f" {_t('now', lang)}"
                                                                        if policy.at_current_time else "")),
        (_t("trust_store", lang), f"{policy.trust_store} ({'; '.join(policy.trust_anchors)})"),
        (_t("fetching", lang), _t("yes" if policy.revocation_fetching else "no", lang)),
    ]
    return rows


# -- HTML ------------------------------------------------------------------------------------------------------

_COLOURS = {Indication.TOTAL_PASSED: "#1b7a3a", Indication.TOTAL_FAILED: "#b3261e", Indication.INDETERMINATE: "#a05a00"}

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:2em;color:#1d1d1d;max-width:60em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%;margin:.3em 0} th,td{text-align:left;vertical-align:top;padding:.25em .5em;
border-bottom:1px solid #ddd;font-size:.92em} th{width:16em;color:#444;font-weight:600}
.badge{display:inline-block;color:#fff;padding:.15em .6em;border-radius:.3em;font-weight:700}
section{border:1px solid #ccc;border-radius:.4em;padding:.6em 1em;margin:1em 0}
ul{margin:.2em 0 .2em 1.2em;padding:0} li{font-size:.92em} .muted{color:#666;font-size:.85em}
""".strip()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(indication: Indication, sub: str | None, lang: str) -> str:
    label = INDICATIONS[indication][lang] + (f" — {sub}" if sub else "")
    return f'<span class="badge" style="background:{_COLOURS[indication]}">{_e(label)}</span>'


def _rows(rows: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)


def _list(items: list[str], lang: str) -> str:
    if not items:
        return f"<p class=\"muted\">{_e(_t('nothing', lang))}</p>"
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def render_html(report: ValidationReport, lang: str = "vi") -> str:
    lang = lang if lang in LANGUAGES else "vi"
    parts = [f"<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">",
             f"<title>{_e(_t('title', lang))} — {_e(report.document)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(_t('title', lang))}</h1>",
             f"<p>{_e(_t('overall', lang))}: {_badge(report.indication, None, lang)}</p>",
             f"<table>{_rows(_header_rows(report, lang))}</table>"]
    for n, verdict in enumerate(report.signatures, start=1):
        parts.append("<section>")
        parts.append(f"<h2>{_e(_t('signature', lang))} {n}: {_e(verdict.id)} <span class=\"muted\">"
                     f"({_e(verdict.kind)})</span></h2>")
        parts.append(f"<p>{_badge(verdict.indication, verdict.sub_indication, lang)}</p>")
        reasons = _explain(verdict, lang)
        if reasons:
            parts.append(f"<p><strong>{_e(_t('why', lang))}:</strong></p>{_list(reasons, lang)}")
        parts.append(f"<table>{_rows(_facts(verdict, lang))}</table>")
        mods = _modification_rows(verdict, lang)
        if mods:
            parts.append(f"<h3>{_e(_t('modifications', lang))}</h3><table>{_rows(mods)}</table>")
        for key, lines in (("chain", _chain_lines(verdict, lang)), ("revocation", _revocation_lines(verdict, lang)),
                           ("timestamps", _timestamp_lines(verdict, lang))):
            parts.append(f"<h3>{_e(_t(key, lang))}</h3>{_list(lines, lang)}")
        parts.append("</section>")
    parts.append(f"<p class=\"muted\">{_e(_t('by_standard', lang))} {_e(_t('generated', lang))}: "
                 f"{_e(_when(datetime.now(timezone.utc)))}</p></body></html>")
    return "".join(parts)


# -- PDF -------------------------------------------------------------------------------------------------------

_RGB = {Indication.TOTAL_PASSED: (27, 122, 58), Indication.TOTAL_FAILED: (179, 38, 30),
        Indication.INDETERMINATE: (160, 90, 0)}


def render_pdf(report: ValidationReport, lang: str = "vi") -> bytes:
    from fpdf import FPDF

    lang = lang if lang in LANGUAGES else "vi"
    pdf = FPDF(format="A4")
    pdf.set_title(f"{_t('title', lang)} — {report.document}")
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def text(value: str, size: float = 9, style: str = "", colour: tuple[int, int, int] = (29, 29, 29),
             height: float = 5) -> None:
        pdf.set_font("DejaVu", style, size)
        pdf.set_text_color(*colour)
        pdf.set_x(pdf.l_margin)
        pdf.multi_cell(width, height, value)

    def rows(items: list[tuple[str, str]]) -> None:
        for key, value in items:
            pdf.set_x(pdf.l_margin)
            pdf.set_font("DejaVu", "B", 8.5)
            pdf.set_text_color(70, 70, 70)
            pdf.write(4.6, f"{key}: ")
            pdf.set_font("DejaVu", "", 8.5)
            pdf.set_text_color(29, 29, 29)
            pdf.write(4.6, value)
            pdf.ln(4.8)

    def lines(title: str, items: list[str]) -> None:
        text(title, 9.5, "B", height=6)
        for item in items or [_t("nothing", lang)]:
            text(f"• {item}", 8.5, height=4.6)

    def badge(indication: Indication, sub: str | None) -> None:
        text(INDICATIONS[indication][lang] + (f" — {sub}" if sub else ""), 11, "B", _RGB[indication], 7)

    text(_t("title", lang), 16, "B", height=9)
    text(f"{_t('overall', lang)}:", 10, "B", height=6)
    badge(report.indication, None)
    rows(_header_rows(report, lang))
    for n, verdict in enumerate(report.signatures, start=1):
        pdf.ln(3)
        pdf.set_draw_color(180, 180, 180)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(2)
        text(f"{_t('signature', lang)} {n}: {verdict.id} ({verdict.kind})", 12, "B", height=7)
        badge(verdict.indication, verdict.sub_indication)
        reasons = _explain(verdict, lang)
        if reasons:
            lines(_t("why", lang), reasons)
        rows(_facts(verdict, lang))
        mods = _modification_rows(verdict, lang)
        if mods:
            text(_t("modifications", lang), 9.5, "B", height=6)
            rows(mods)
        lines(_t("chain", lang), _chain_lines(verdict, lang))
        lines(_t("revocation", lang), _revocation_lines(verdict, lang))
        lines(_t("timestamps", lang), _timestamp_lines(verdict, lang))
    pdf.ln(4)
    text(f"{_t('by_standard', lang)} {_t('generated', lang)}: {_when(datetime.now(timezone.utc))}", 7.5,
         colour=(102, 102, 102))
    return bytes(pdf.output())
