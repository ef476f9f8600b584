"""POST /v1/validations over HTTP on loopback: raw, multipart and JSON bodies, the verdicts, the human
reports, and bad input (never a 500)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from signer import ltv, xades
from tests.signer import validation_pki as pki
from tests.signer.test_validation_reports import CONTENT, World, world  # noqa: F401 - the session's outside PKI
from tests.signer.test_xades import CHIEF, ORDER, XXE
from tests.support import bearer_http, flip_byte, key_signer, relying_system_client, require_tool


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, world: World,  # noqa: F811
        enrolled: object) -> Iterator[httpx.Client]:
    previous = runtime.settings.trust_store
    runtime.settings.trust_store = world.store
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-validation", scopes=["read"])) as http:
        yield http
    runtime.settings.trust_store = previous


@pytest.fixture(scope="module")
def files(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # noqa: F811
    work = tmp_path_factory.mktemp("validation-api")
    order = work / "order.pdf"
    write_payment_order_pdf(order)
    hour_ago = pki.NOW - timedelta(hours=1)
    out = {"order": order}
    out["good"] = pki.pyhanko_sign_pdf(order, work / "good.pdf", world.token, crls=world.crls,
                                       timestamp=(world.tsa, hour_ago))
    out["revoked"] = pki.pyhanko_sign_pdf(order, work / "revoked.pdf", world.revoked, crls=world.crls)
    out["revoked_ts"] = pki.pyhanko_sign_pdf(order, work / "revoked-ts.pdf", world.revoked, crls=world.crls,
                                             timestamp=(world.tsa, pki.NOW - timedelta(days=3)))
    out["expired"] = pki.pyhanko_sign_pdf(order, work / "expired.pdf", world.expired, crls=world.crls)
    out["rogue"] = pki.pyhanko_sign_pdf(order, work / "rogue.pdf", pki.issue(world.rogue_root, "Kẻ Giả Mạo"))
    out["bare"] = pki.pyhanko_sign_pdf(order, work / "bare.pdf", world.token, with_chain=False)
    out["rogue_tsa"] = pki.pyhanko_sign_pdf(order, work / "rogue-tsa.pdf", world.token, crls=world.crls,
                                            timestamp=(world.rogue_tsa, hour_ago))
    tampered = work / "tampered.pdf"
    data = out["good"].read_bytes()
    tampered.write_bytes(data)
    flip_byte(tampered, data.index(b"/Type /Page") + 2)
    out["tampered"] = tampered
    content = work / "unc.xml"
    content.write_bytes(CONTENT)
    out["content"] = content
    out["p7s"] = pki.openssl_cms_sign(content, world.token, work / "unc.p7s")
    out["p7m"] = pki.openssl_cms_sign(content, world.token, work / "unc.p7m", detached=False)
    changed = work / "changed.xml"
    changed.write_bytes(CONTENT.replace(b"125000000", b"925000000"))
    out["changed"] = changed
    return out


def _verdict(response: httpx.Response) -> tuple[str, str | None]:
    assert response.status_code == 200, response.text
    first = response.json()["signatures"][0]
    return first["indication"], first["sub_indication"]


@pytest.mark.parametrize(("name", "expected"), [
    ("good", ("TOTAL_PASSED", None)),
    ("tampered", ("TOTAL_FAILED", "HASH_FAILURE")),
    ("revoked", ("INDETERMINATE", "REVOKED_NO_POE")),
    ("revoked_ts", ("TOTAL_PASSED", None)),
    ("expired", ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE")),
    ("rogue", ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")),
    ("bare", ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")),
    ("rogue_tsa", ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")),
])
def test_pdf_verdicts_from_a_raw_body(api: httpx.Client, files: dict[str, Path], name: str,
                                      expected: tuple[str, str | None]) -> None:
    response = api.post("/v1/validations", content=files[name].read_bytes(),
                        headers={"Content-Type": "application/pdf"}, params={"name": f"{name}.pdf"})
    assert _verdict(response) == expected
    assert response.json()["document"] == f"{name}.pdf"


def test_cms_through_multipart_and_json(api: httpx.Client, files: dict[str, Path]) -> None:
    multipart = {"document": ("unc.p7s", files["p7s"].read_bytes(), "application/pkcs7-signature"),
                 "content": ("unc.xml", files["content"].read_bytes(), "application/xml")}
    # OpenSSL embeds no revocation data, and this server does not fetch: TRY_LATER, with the reason.
    response = api.post("/v1/validations", files=multipart)
    assert _verdict(response) == ("INDETERMINATE", "TRY_LATER")
    assert response.json()["document"] == "unc.p7s"
    changed = {**multipart, "content": ("unc.xml", files["changed"].read_bytes(), "application/xml")}
    assert _verdict(api.post("/v1/validations", files=changed)) == ("TOTAL_FAILED", "HASH_FAILURE")
    body = {"document": base64.b64encode(files["p7s"].read_bytes()).decode(),
            "content": base64.b64encode(files["changed"].read_bytes()).decode(), "name": "unc.p7s"}
    assert _verdict(api.post("/v1/validations", json=body)) == ("TOTAL_FAILED", "HASH_FAILURE")
    enveloping = {"document": base64.b64encode(files["p7m"].read_bytes()).decode()}
    assert _verdict(api.post("/v1/validations", json=enveloping)) == ("INDETERMINATE", "TRY_LATER")


def test_validation_at_a_given_time(api: httpx.Client, files: dict[str, Path]) -> None:
    response = api.post("/v1/validations", content=files["good"].read_bytes(),
                        params={"at": pki.NOW.isoformat()})
    report = response.json()
    assert response.status_code == 200 and report["policy"]["at_current_time"] is False
    assert report["indication"] == "TOTAL_PASSED", report
    future = api.post("/v1/validations", content=files["good"].read_bytes(), params={"at": "2999-01-01T00:00:00"})
    assert future.status_code == 400 and future.json()["code"] == "invalid_input"


def test_human_reports(api: httpx.Client, files: dict[str, Path], tmp_path: Path) -> None:
    page = api.post("/v1/validations", content=files["revoked"].read_bytes(), headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "CHƯA XÁC ĐỊNH" in page.text and "REVOKED_NO_POE" in page.text
    english = api.post("/v1/validations", content=files["revoked"].read_bytes(), params={"lang": "en"},
                       headers={"Accept": "text/html"})
    assert "INDETERMINATE" in english.text and "revoked on" in english.text
    pdf = api.post("/v1/validations", content=files["good"].read_bytes(), headers={"Accept": "application/pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    (tmp_path / "report.pdf").write_bytes(pdf.content)
    text = subprocess.run([require_tool("pdftotext"), str(tmp_path / "report.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "HỢP LỆ" in text and "Phạm Văn Token" in text


def test_bad_input_is_a_clear_4xx(api: httpx.Client, runtime: Runtime, files: dict[str, Path], tmp_path: Path,
                                  live_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def post(content: bytes, **kw: object) -> httpx.Response:
        return api.post("/v1/validations", content=content, **kw)  # type: ignore[arg-type]

    cases = {
        "not_signed": post(b"just some bytes, not a signature"),
        "not_signed ": post(files["order"].read_bytes()),
        "content_required": post(files["p7s"].read_bytes()),
        "invalid_request": api.post("/v1/validations", json={"document": "%%% not base64"}),
        "invalid_request ": api.post("/v1/validations", files={"other": ("x", b"x")}),
        "policy_violation": post(files["good"].read_bytes(), params={"fetch": "true"}),
    }
    encrypted = tmp_path / "encrypted.pdf"
    subprocess.run([require_tool("qpdf"), "--encrypt", "u", "o", "256", "--", str(files["good"]), str(encrypted)],
                   check=True)
    cases["encrypted_document"] = post(encrypted.read_bytes())
    for code, response in cases.items():
        assert 400 <= response.status_code < 500 and response.json()["code"] == code.strip(), (code, response.text)
    truncated = post(files["good"].read_bytes()[:20_000])
    assert truncated.status_code in (200, 422), truncated.text
    assert truncated.status_code == 422 or truncated.json()["indication"] != "TOTAL_PASSED"

    monkeypatch.setattr(runtime.settings, "max_document_bytes", 64 * 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(64):
            yield b"\0" * 16 * 1024

    too_big = api.post("/v1/validations", content=chunks())
    assert too_big.status_code == 413 and too_big.json()["code"] == "document_too_large"
    with httpx.Client(base_url=live_server, timeout=30) as anonymous:
        assert anonymous.post("/v1/validations", content=b"x").status_code == 401
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-sign-only", scopes=["sign"])) as signer_only:
        refused = signer_only.post("/v1/validations", content=files["good"].read_bytes())
        assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"


def test_xml_signatures(api: httpx.Client, runtime: Runtime, enrolled: object, emulators: object) -> None:
    key = key_signer(runtime, enrolled.rsa)  # type: ignore[attr-defined]
    signed = xades.sign(key, ORDER, CHIEF, level=ltv.Level.B_LT, services=runtime.long_term_services("vnpt"))
    raw = api.post("/v1/validations", content=signed, headers={"Content-Type": "application/xml"},
                   params={"name": "unc.xml"})
    assert _verdict(raw) == ("TOTAL_PASSED", None) and raw.json()["format"] == "XML"
    assert raw.json()["signatures"][0]["level"] == "B-LT" and raw.json()["signatures"][0]["kind"] == "XAdES"
    tampered = signed.replace(b"125000000", b"925000000")
    multipart = {"document": ("unc.xml", b"\xef\xbb\xbf" + tampered, "text/xml")}
    assert _verdict(api.post("/v1/validations", files=multipart)) == ("TOTAL_FAILED", "HASH_FAILURE")
    page = api.post("/v1/validations", content=signed, headers={"Accept": "text/html"}, params={"lang": "en"})
    assert page.status_code == 200 and "XAdES" in page.text and "PASSED" in page.text
    for body, code in ((XXE, "xml_dtd_forbidden"), (ORDER, "not_signed")):
        refused = api.post("/v1/validations", content=body, headers={"Content-Type": "application/xml"})
        assert 400 <= refused.status_code < 500 and refused.json()["code"] == code, refused.text
