"""The validation core: kyso's own signatures and others' (pyHanko alone, OpenSSL alone, a key outside
kyso), each failure with its ETSI indication and sub-indication, the CLI, and the human reports."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import x509

from broker import credentials
from broker.runtime import Runtime
from ca_adapters.emulator.server import EmulatorSet
from demo.documents import ACCOUNT_HOLDER_FIELD, CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from signer import cades, ltv, pades, reports, validation
from signer.validation_report import Indication
from tests.conftest import Enrolled, load_credential
from tests.signer import validation_pki as pki
from tests.support import admin, flip_byte, require_tool, write_pem

CONTENT = "<UyNhiemChi><SoTien>125000000</SoTien><NguoiNhan>Việt Hưng</NguoiNhan></UyNhiemChi>".encode()
PASSED, FAILED, INDETERMINATE = Indication.TOTAL_PASSED, Indication.TOTAL_FAILED, Indication.INDETERMINATE


@dataclass
class World:
    """A PKI outside kyso (trusted through the store), one nobody trusts, and the files signed with them."""

    root: pki.Issued
    ca: pki.Issued
    tsa: pki.Issued
    rogue_root: pki.Issued
    rogue_tsa: pki.Issued
    token: pki.Issued
    expired: pki.Issued
    revoked: pki.Issued
    revoked_at: object
    crls: list
    store: Path
    work: Path

    def options(self, **kw: object) -> validation.ValidationOptions:
        return validation.ValidationOptions(validation.load_trust_store(self.store), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, root_der: bytes) -> World:
    work = tmp_path_factory.mktemp("validation")
    root = pki.root("Ngoài Root CA")
    ca = pki.issue(root, "Ngoài Issuing CA", ca=True)
    tsa = pki.issue(root, "Ngoài TSA", tsa=True)
    rogue_root = pki.root("Rogue Root CA")
    token = pki.issue(ca, "Phạm Văn Token")
    expired = pki.issue(ca, "Lê Thị Hết Hạn", not_before=pki.NOW - timedelta(days=400),
                        not_after=pki.NOW - timedelta(days=30))
    revoked = pki.issue(ca, "Đinh Văn Thu Hồi", not_before=pki.NOW - timedelta(days=100))
    revoked_at = pki.NOW - timedelta(days=2)
    crls = [pki.crl(ca, {revoked.cert.serial_number: revoked_at}), pki.crl(root)]
    store = work / "trust"
    store.mkdir()
    (store / "national.pem").write_bytes(root.pem())
    write_pem(store / "kyso-test-root.pem", root_der)
    return World(root, ca, tsa, rogue_root, pki.issue(rogue_root, "Rogue TSA", tsa=True), token, expired, revoked,
                 revoked_at, crls, store, work)


def _order(directory: Path) -> Path:
    order = directory / "order.pdf"
    if not order.exists():
        write_payment_order_pdf(order)
    return order


def _one(report: validation.ValidationReport) -> tuple[Indication, str | None]:
    return report.signatures[0].indication, report.signatures[0].sub_indication


# -- signatures made outside kyso -----------------------------------------------------------------------------


def test_pyhanko_pdf_with_timestamp_and_embedded_crls_passes_offline(world: World, tmp_path: Path) -> None:
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "token.pdf", world.token, crls=world.crls,
                                  timestamp=(world.tsa, pki.NOW - timedelta(hours=1)))
    report = validation.validate_file(signed, world.options())
    [sig] = report.signatures
    assert (sig.indication, sig.sub_indication, sig.level, sig.kind) == (PASSED, None, "B-LT", "PAdES")
    assert "Phạm Văn Token" in sig.signer and sig.proven_signing_time is not None
    assert [c.trust_anchor for c in sig.chain] == [True, False, False]
    assert {r.source for r in sig.revocation} == {"embedded"} and len(sig.revocation) == 2
    assert sig.timestamps[0].kind == "signature" and sig.timestamps[0].indication is PASSED
    assert sig.modifications is not None and sig.modifications.allowed and sig.modifications.pages_touched == []
    assert report.passed and json.loads(json.dumps(report.as_dict()))["indication"] == "TOTAL_PASSED"


def test_without_revocation_data_and_no_fetching_is_try_later(world: World, tmp_path: Path) -> None:
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "bb.pdf", world.token)
    report = validation.validate_file(signed, world.options())
    assert _one(report) == (INDETERMINATE, "TRY_LATER")
    assert any("revocation" in r for r in report.signatures[0].reasons)


def test_openssl_cms_detached_and_enveloping(world: World, tmp_path: Path) -> None:
    content = tmp_path / "unc.xml"
    content.write_bytes(CONTENT)
    detached = pki.openssl_cms_sign(content, world.token, tmp_path / "unc.p7s")
    report = validation.validate_file(detached, world.options(), content=content)
    # OpenSSL embeds no revocation data: the chain's status is unknown offline.
    assert _one(report) == (INDETERMINATE, "TRY_LATER") and report.signatures[0].level == "B-B"
    enveloping = pki.openssl_cms_sign(content, world.token, tmp_path / "unc.p7m", detached=False)
    assert _one(validation.validate_file(enveloping, world.options())) == (INDETERMINATE, "TRY_LATER")
    flip_byte(content, 5)
    assert _one(validation.validate_file(detached, world.options(), content=content)) == (FAILED, "HASH_FAILURE")
    with pytest.raises(validation.ContentRequired):
        validation.validate_file(detached, world.options())


def test_untrusted_root_and_missing_chain(world: World, tmp_path: Path) -> None:
    rogue = pki.issue(world.rogue_root, "Kẻ Giả Mạo")
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "rogue.pdf", rogue)
    report = validation.validate_file(signed, world.options())
    assert _one(report) == (INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND")
    assert any("Rogue Root CA" in r and "not in the trust store" in r for r in report.signatures[0].reasons)
    bare = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "bare.pdf", world.token, with_chain=False)
    report = validation.validate_file(bare, world.options())
    assert _one(report) == (INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND")
    assert any("Ngoài Issuing CA" in r and "neither in the signature" in r for r in report.signatures[0].reasons)


def test_expired_certificate_without_proof_of_existence(world: World, tmp_path: Path) -> None:
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "expired.pdf", world.expired, crls=world.crls)
    assert _one(validation.validate_file(signed, world.options())) == (INDETERMINATE, "OUT_OF_BOUNDS_NO_POE")


def test_revoked_certificate_with_and_without_an_earlier_timestamp(world: World, tmp_path: Path) -> None:
    late = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "revoked.pdf", world.revoked, crls=world.crls)
    report = validation.validate_file(late, world.options())
    assert _one(report) == (INDETERMINATE, "REVOKED_NO_POE")
    assert any("revoked on" in r for r in report.signatures[0].reasons)
    # A timestamp three days ago proves the signature existed before the revocation two days ago.
    early = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "revoked-ts.pdf", world.revoked, crls=world.crls,
                                 timestamp=(world.tsa, pki.NOW - timedelta(days=3)))
    assert _one(validation.validate_file(early, world.options())) == (PASSED, None)
    after = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "revoked-ts-late.pdf", world.revoked,
                                 crls=world.crls, timestamp=(world.tsa, pki.NOW - timedelta(days=1)))
    assert _one(validation.validate_file(after, world.options())) == (INDETERMINATE, "REVOKED_NO_POE")


def test_timestamp_from_an_untrusted_tsa(world: World, tmp_path: Path) -> None:
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "rogue-ts.pdf", world.token, crls=world.crls,
                                  timestamp=(world.rogue_tsa, pki.NOW - timedelta(hours=1)))
    report = validation.validate_file(signed, world.options())
    assert _one(report) == (INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND")
    assert report.signatures[0].level == "B-B"  # a timestamp nobody can trust raises nothing


def test_a_changed_byte_a_page_added_and_a_locked_field_changed(world: World, tmp_path: Path) -> None:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "s.pdf", world.token, crls=world.crls,
                                  field_name=CHIEF_ACCOUNTANT_FIELD, certify=True,
                                  timestamp=(world.tsa, pki.NOW - timedelta(hours=1)))
    data = signed.read_bytes()
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(data)
    flip_byte(tampered, data.index(b"/Type /Page") + 2 if b"/Type /Page" in data else 400)
    assert _one(validation.validate_file(tampered, world.options()))[0] is FAILED

    added = tmp_path / "page-added.pdf"
    with signed.open("rb") as fh, added.open("wb") as out:
        writer = IncrementalPdfFileWriter(fh, strict=False)
        writer.insert_page(generic.DictionaryObject({
            generic.NameObject("/Type"): generic.NameObject("/Page"),
            generic.NameObject("/MediaBox"): generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 595, 842)]),
        }))
        writer.write(out)
    report = validation.validate_file(added, world.options())
    [sig] = report.signatures
    assert (sig.indication, sig.sub_indication) == (INDETERMINATE, "SIG_CONSTRAINTS_FAILURE")
    assert sig.modifications is not None and not sig.modifications.allowed and sig.modifications.level == "OTHER"
    assert 2 in sig.modifications.pages_touched

    # The account holder's field is locked by the first signature: a later signature in it is refused.
    locked = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "lock.pdf", world.token, crls=world.crls,
                                  field_name="Lock", field_lock=[ACCOUNT_HOLDER_FIELD],
                                  timestamp=(world.tsa, pki.NOW - timedelta(hours=1)))
    then = pki.pyhanko_sign_pdf(locked, tmp_path / "lock-2.pdf", world.token, crls=world.crls,
                                field_name=ACCOUNT_HOLDER_FIELD, timestamp=(world.tsa, pki.NOW - timedelta(hours=1)))
    report = validation.validate_file(then, world.options())
    first = report.signatures[0]
    assert first.modifications is not None and first.modifications.locked_fields == [ACCOUNT_HOLDER_FIELD]
    assert (first.indication, first.sub_indication) == (INDETERMINATE, "SIG_CONSTRAINTS_FAILURE"), first
    assert report.signatures[1].indication is PASSED


# -- kyso's own signatures, at several levels ------------------------------------------------------------------


def test_kyso_cades_and_pades_levels(runtime: Runtime, enrolled: Enrolled, emulator_reset: EmulatorSet,
                                     world: World, tmp_path: Path, trust_roots: list[x509.Certificate]) -> None:
    key = credentials.key_signer(runtime.hsm, load_credential(runtime, enrolled.rsa))
    services = runtime.long_term_services("vnpt")
    offline = world.options()
    online = world.options(fetch_revocation=True)
    b_b = tmp_path / "b-b.p7s"
    b_b.write_bytes(cades.sign(key, content=CONTENT))
    content = tmp_path / "unc.xml"
    content.write_bytes(CONTENT)
    assert _one(validation.validate_file(b_b, offline, content=content)) == (INDETERMINATE, "TRY_LATER")
    report = validation.validate_file(b_b, online, content=content)
    assert _one(report) == (PASSED, None) and report.signatures[0].level == "B-B"
    assert {r.source for r in report.signatures[0].revocation} == {"fetched"}
    b_lt = tmp_path / "b-lt.p7m"
    b_lt.write_bytes(cades.sign(key, content=CONTENT, detached=False, level=ltv.Level.B_LT, services=services))
    report = validation.validate_file(b_lt, offline)
    assert _one(report) == (PASSED, None) and report.signatures[0].level == "B-LT", report.signatures[0]

    order = _order(tmp_path)
    for level in (ltv.Level.B_T, ltv.Level.B_LT, ltv.Level.B_LTA):
        out = tmp_path / f"{level.value}.pdf"
        pades.sign(key, order, out, pades.PadesOptions(CHIEF_ACCOUNTANT_FIELD, certify=True), level, services)
        report = validation.validate_file(out, online if level is ltv.Level.B_T else offline)
        assert all(s.passed for s in report.signatures), report.signatures
        assert report.signatures[0].level == level.value, (level, report.signatures[0])
        if level is ltv.Level.B_LTA:
            assert report.signatures[1].kind == "document timestamp"


# -- bad input ----------------------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello, not signed")
    with pytest.raises(validation.NotSigned):
        validation.validate_file(junk, world.options())
    plain = tmp_path / "plain.pdf"
    write_payment_order_pdf(plain)
    with pytest.raises(validation.NotSigned, match="no signature"):
        validation.validate_file(plain, world.options())
    encrypted = tmp_path / "encrypted.pdf"
    subprocess.run([require_tool("qpdf"), "--encrypt", "u", "o", "256", "--", str(plain), str(encrypted)], check=True)
    with pytest.raises(validation.EncryptedDocument):
        validation.validate_file(encrypted, world.options())
    signed = pki.pyhanko_sign_pdf(plain, tmp_path / "signed.pdf", world.token, crls=world.crls)
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(signed.read_bytes()[: signed.stat().st_size // 2])
    try:
        report = validation.validate_file(truncated, world.options())
        assert not report.passed
    except validation.InvalidDocument as exc:
        assert exc.code in ("invalid_document", "not_signed")
    content = tmp_path / "c.xml"
    content.write_bytes(CONTENT)
    p7s = pki.openssl_cms_sign(content, world.token, tmp_path / "c.p7s")
    (tmp_path / "cut.p7s").write_bytes(p7s.read_bytes()[:200])
    with pytest.raises(validation.NotSigned):
        validation.validate_file(tmp_path / "cut.p7s", world.options())
    with pytest.raises(validation.InvalidTrustStore):
        validation.load_trust_store(junk)


# -- the CLI, with no data dir -------------------------------------------------------------------------------------


def _kyso(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    return admin(tmp_path / "no-data-dir", capsys, "verify", *args)


def test_cli_verify(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "good.pdf", world.token, crls=world.crls,
                                timestamp=(world.tsa, pki.NOW - timedelta(hours=1)))
    code, out, err = _kyso(capsys, tmp_path, str(good), "--trust", str(world.store), "--report",
                           str(tmp_path / "r.html"))
    assert code == 0 and "TOTAL_PASSED" in out and not err, (out, err)
    assert "HỢP LỆ" in (tmp_path / "r.html").read_text()
    code, out, err = _kyso(capsys, tmp_path, str(good), "--trust", str(world.store), "--json",
                           "--report", str(tmp_path / "r.pdf"), "--lang", "en")
    assert code == 0 and json.loads(out)["signatures"][0]["level"] == "B-LT"
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    revoked = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "rev.pdf", world.revoked, crls=world.crls)
    code, out, err = _kyso(capsys, tmp_path, str(revoked), "--trust", str(world.store))
    assert code == 1 and "REVOKED_NO_POE" in out and "Traceback" not in out + err
    # As at three days ago, with the CRLs of that day: validation at a given time.
    old_crls = [pki.crl(world.ca, this_update=pki.NOW - timedelta(days=3)),
                pki.crl(world.root, this_update=pki.NOW - timedelta(days=3))]
    then = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "then.pdf", world.token, crls=old_crls)
    at = (pki.NOW - timedelta(days=2)).isoformat()
    code, out, err = _kyso(capsys, tmp_path, str(then), "--trust", str(world.store), "--at", at)
    assert code == 0 and "TOTAL_PASSED" in out, out + err
    rogue = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "rogue.pdf", pki.issue(world.rogue_root, "X"))
    code, out, err = _kyso(capsys, tmp_path, str(rogue), "--trust", str(world.store))
    assert code == 1 and "NO_CERTIFICATE_CHAIN_FOUND" in out and "Traceback" not in out + err
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.7\nnot really")
    for args, word in (([str(junk), "--trust", str(world.store)], "invalid_document"),
                       ([str(tmp_path / "missing.pdf"), "--trust", str(world.store)], "invalid_input"),
                       ([str(good)], "invalid_input"),
                       ([str(good), "--trust", str(junk)], "invalid_trust_store"),
                       ([str(good), "--trust", str(world.store), "--at", "yesterday"], "invalid_input")):
        code, out, err = _kyso(capsys, tmp_path, *args)
        assert code == 2 and err.strip().startswith(f"error [{word}]") and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1


# -- the human reports, rendered and looked at ------------------------------------------------------------------------


def test_reports_render(world: World, tmp_path: Path) -> None:
    signed = pki.pyhanko_sign_pdf(_order(tmp_path), tmp_path / "r.pdf", world.revoked, crls=world.crls)
    report = validation.validate_file(signed, world.options(), name='<script>alert("x")</script>.pdf')
    page = reports.render_html(report, "vi")
    assert "<script>" not in page and "&lt;script&gt;" in page and "CHƯA XÁC ĐỊNH" in page
    assert "REVOKED_NO_POE" in reports.render_html(report, "en")
    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")
    shot = tmp_path / "report-html.png"
    subprocess.run([require_tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1400",
                    f"--screenshot={shot}", html_file.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    pdf_file = tmp_path / "report.pdf"
    pdf_file.write_bytes(reports.render_pdf(report, "vi"))
    subprocess.run([require_tool("pdftoppm"), "-png", "-r", "60", str(pdf_file), str(tmp_path / "report-pdf")],
                   check=True)
    text = subprocess.run([require_tool("pdftotext"), str(pdf_file), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "Báo cáo kiểm tra chữ ký số" in text and "Đinh Văn Thu Hồi" in text
