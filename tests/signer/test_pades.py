"""PAdES B-B: two signers on one payment order, checked by pdfsig, MuPDF and pyHanko."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import x509

from broker import credentials
from broker.runtime import Runtime
from ca_adapters.emulator.server import EmulatorSet
from demo.documents import ACCOUNT_HOLDER_FIELD, CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from signer import InvalidDocument, cades, pades, validate
from tests.conftest import Enrolled, load_credential
from tests.support import flip_byte, nss_db_with_root, pdfsig, require_tool


@pytest.fixture(scope="module")
def signed_twice(runtime: Runtime, enrolled: Enrolled, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("pades")
    order = work / "order.pdf"
    write_payment_order_pdf(order)
    chief = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.rsa))
    holder = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.ec))
    first, second = work / "signed-1.pdf", work / "signed-2.pdf"
    pades.sign(chief, order, first, pades.PadesOptions(
        CHIEF_ACCOUNTANT_FIELD, certify=True, reason="Kế toán trưởng ký", stamp_text="KẾ TOÁN TRƯỞNG\n%(signer)s"))
    pades.sign(holder, first, second, pades.PadesOptions(ACCOUNT_HOLDER_FIELD, reason="Chủ tài khoản ký"))
    return first, second


def test_second_signature_leaves_the_first_valid_in_pyhanko(signed_twice: tuple[Path, Path],
                                                            trust_roots: list[x509.Certificate]) -> None:
    first, second = signed_twice
    [only] = validate.validate_pdf(first, trust_roots)
    assert only.ok and only.modification_level == "NONE"
    reports = validate.validate_pdf(second, trust_roots)
    assert [r.label for r in reports] == [CHIEF_ACCOUNTANT_FIELD, ACCOUNT_HOLDER_FIELD]
    assert all(r.ok and r.intact and r.trusted and r.docmdp_ok for r in reports)
    assert reports[0].modification_level == "FORM_FILLING"  # the approval signature only filled a field


def test_pdfsig_accepts_both_with_the_test_root_trusted(signed_twice: tuple[Path, Path], root_pem: Path,
                                                        tmp_path: Path, emulators: EmulatorSet) -> None:
    # NSS asks the providers' OCSP responders (the emulators) named in the certificates.
    report = pdfsig(signed_twice[1], nss_db_with_root(tmp_path / "nss", root_pem))
    assert report.count("Signature is Valid.") == 2, report
    assert report.count("Certificate is Trusted.") == 2, report
    assert "Nguyễn Thị Lan" in report and "Trần Văn Hùng" in report


def test_mupdf_checks_both_digests(signed_twice: tuple[Path, Path]) -> None:
    result = subprocess.run([require_tool("mutool"), "sign", "-v", str(signed_twice[1])], capture_output=True, text=True)
    out = result.stdout + result.stderr
    blocks = out.split("Verifying signature")[1:]
    assert len(blocks) == 2, out
    assert "Digest error" not in out
    # MuPDF knows no custom roots ("Certificate error"); it checks each digest and the changes after it.
    assert "The signature is valid but there have been edits since signing." in blocks[0]
    assert "The document is unchanged since signing." in blocks[1]


def test_qpdf_finds_the_structure_sound(signed_twice: tuple[Path, Path]) -> None:
    result = subprocess.run([require_tool("qpdf"), "--check", str(signed_twice[1])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_one_changed_byte_is_detected(signed_twice: tuple[Path, Path], root_pem: Path, tmp_path: Path,
                                      trust_roots: list[x509.Certificate]) -> None:
    tampered = tmp_path / "tampered.pdf"
    data = signed_twice[1].read_bytes()
    tampered.write_bytes(data)
    flip_byte(tampered, data.index(b"125.000.000") if b"125.000.000" in data else 400)
    reports = validate.validate_pdf(tampered, trust_roots)
    assert not any(r.ok for r in reports)
    assert "Signature is Valid." not in pdfsig(tampered, nss_db_with_root(tmp_path / "nss", root_pem))


def test_a_field_is_never_reused_and_only_the_first_signature_certifies(runtime: Runtime, enrolled: Enrolled,
                                                                       signed_twice: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    key = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.ec))
    with pytest.raises(InvalidDocument, match="already signed"):
        pades.sign(key, signed_twice[0], tmp_path / "x.pdf", pades.PadesOptions(CHIEF_ACCOUNTANT_FIELD))
    with pytest.raises(InvalidDocument, match="first signature"):
        pades.sign(key, signed_twice[0], tmp_path / "x.pdf", pades.PadesOptions("Other", certify=True))
    assert not (tmp_path / "x.pdf").exists()


def test_malformed_and_encrypted_pdfs_are_refused(runtime: Runtime, enrolled: Enrolled, tmp_path: Path) -> None:
    key = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.ec))
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\nthis is not really a pdf\n")
    with pytest.raises(InvalidDocument) as bad:
        pades.sign(key, junk, tmp_path / "out.pdf", pades.PadesOptions("Sig"))
    assert bad.value.code == "invalid_document"
    plain = tmp_path / "plain.pdf"
    write_payment_order_pdf(plain)
    encrypted = tmp_path / "encrypted.pdf"
    subprocess.run([require_tool("qpdf"), "--encrypt", "user", "owner", "256", "--", str(plain), str(encrypted)],
                   check=True)
    with pytest.raises(InvalidDocument, match="encrypted"):
        pades.sign(key, encrypted, tmp_path / "out.pdf", pades.PadesOptions("Sig"))
    assert not (tmp_path / "out.pdf").exists()


def test_vietnamese_text_survives_and_the_page_renders(signed_twice: tuple[Path, Path], tmp_path: Path) -> None:
    text = subprocess.run([require_tool("pdftotext"), str(signed_twice[1]), "-"], capture_output=True,
                          text=True, check=True).stdout
    captions = ["GIẤY RÚT DỰ TOÁN NGÂN SÁCH", "Mẫu số C2-02a/NS", "Đơn vị rút dự toán: Trường Tiểu học Thử Nghiệm",
                "Mã ĐVQHNS", "Mã NDKT", "Mã chương", "Mã ngành KT", "Mã nguồn NSNN", "Tổng cộng",
                "Một trăm hai mươi lăm triệu đồng chẵn", "Đơn vị nhận tiền", "KẾ TOÁN TRƯỞNG",
                "THỦ TRƯỞNG ĐƠN VỊ / CHỦ TÀI KHOẢN", "PHẦN DO KBNN GHI", "Mã ĐBHC", "GIÁM ĐỐC KBNN"]
    assert [c for c in captions if c not in text] == []
    png = tmp_path / "page"
    subprocess.run([require_tool("pdftoppm"), "-png", "-r", "50", "-f", "1", "-l", "1", str(signed_twice[1]), str(png)],
                   check=True)
    assert list(tmp_path.glob("page*.png"))


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_signed_attributes_are_those_pyhanko_would_make(runtime: Runtime, enrolled: Enrolled, key: str) -> None:
    """kyso encodes the PAdES signed attributes itself (the certificate's part once): byte for byte
    what pyHanko's own CAdES attribute provider gives for the same digest."""
    signer = credentials.key_signer(runtime.hsm, load_credential(runtime, getattr(enrolled, key)))
    digest = hashlib.sha256(b"the document's byte ranges").digest()
    external = pades._external_signer(signer.certificate, signer.chain, signer.scheme, signer.signature_size(),
                                      "sha256")
    theirs = asyncio.run(external.signed_attrs(digest, "sha256", use_pades=True)).dump()
    assert cades.pades_signed_attributes(signer.certificate, signer.chain, digest, "sha256") == theirs
