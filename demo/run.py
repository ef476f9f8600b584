"""The end-to-end demo (``make demo``): the DVC portal's job, through kyso's API, against a sandbox.

1. ``kyso sandbox`` starts the broker on loopback (data dir ``.kyso-demo/``): a SoftHSM token,
   the test PKI of the four providers, a unit with its chief accountant and account holder, their
   keys certified by VNPT SmartCA, MISA, Viettel-CA and Nacencomm, a relying-system client, and
   simulated phones that approve each request (a real signer approves with face or fingerprint),
   and the four providers' emulators (OCSP, CRL, TSA) on loopback.
2. As the DVC portal, with the typed client ``kyso_client``: upload the payment order, ask the
   chief accountant to certify it (PAdES B-LT, approval on the phone), then the account holder to
   sign the result in the second field (PAdES B-LTA); the treasury's XML form of the order signed
   inside itself by both roles (XAdES B-LT); the same order as XML with CAdES B-LT (detached,
   enveloping); and a raw hash through the CSC API.
3. Validate everything with kyso (ETSI verdicts, offline from the embedded data), OpenSSL,
   xmlsec1 and poppler's ``pdfsig``; show the audit log.

Results in ``demo-out/`` (emptied first): signed PDFs, ``payment-order.signed.xml`` (both XAdES
signatures inside), ``payment-order.xml`` with its ``.p7s``, the ``.p7m``, and the trust anchor
under ``demo-out/trust/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ca_adapters.testpki import EMULATOR_HOST
from demo.documents import (
    ACCOUNT_HOLDER_FIELD,
    CHIEF_ACCOUNTANT_FIELD,
    XML_ACCOUNT_HOLDER_PLACEMENT,
    XML_CHIEF_ACCOUNTANT_PLACEMENT,
    XML_DATA_ID,
    payment_order_xml,
    payment_xml,
    write_payment_order_pdf,
)
from kyso_client import KysoClient

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".kyso-demo"
OUT = ROOT / "demo-out"
KYSO = [str(Path(sys.executable).with_name("kyso")), "--data-dir", str(DATA_DIR)]


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, capture: bool = False) -> str:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ {shown.replace(str(ROOT) + '/', '')}", flush=True)
    result = subprocess.run(args, text=True, capture_output=capture)
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, sep="\n")
        raise SystemExit(f"demo failed at: {shown}")
    return result.stdout if capture else ""


def start_sandbox() -> tuple[subprocess.Popen[bytes], dict]:  # type: ignore[type-arg]
    log = (ROOT / ".kyso-demo.log").open("wb")
    print("$ kyso --data-dir .kyso-demo sandbox --port 0   (log: .kyso-demo.log)", flush=True)
    sandbox = subprocess.Popen([*KYSO, "sandbox", "--port", "0"], stdout=log, stderr=subprocess.STDOUT)
    described = DATA_DIR / "sandbox.json"
    deadline = time.monotonic() + 600
    while not described.exists():
        if sandbox.poll() is not None or time.monotonic() > deadline:
            sandbox.kill()
            raise SystemExit("the sandbox did not start; see .kyso-demo.log")
        time.sleep(0.5)
    return sandbox, json.loads(described.read_text())


def link_delegated(user: str, provider: str, provider_user: str) -> str:
    """Register the signer at the provider's emulator, then link that certificate with the CLI."""
    emulator = json.loads((DATA_DIR / "pki" / provider / "emulator.json").read_text())
    httpx.post(f"http://{EMULATOR_HOST}:{emulator['port']}/_emulator/users", timeout=30,
               json={"user_id": provider_user, "full_name": "Trần Văn Chủ"}).raise_for_status()
    output = run(*KYSO, "cert", "link", "--user", user, "--ca", provider, "--provider-user", provider_user, capture=True)
    print(output, end="")
    return output.split()[1]


def credential_of(info: dict, user: str, ca: str) -> str:  # type: ignore[type-arg]
    return next(c["credential_id"] for c in info["credentials"] if c["user_id"] == user and c["ca"] == ca)


def signed(client: KysoClient, request: dict, what: str) -> dict:  # type: ignore[type-arg]
    print(f"  request {request['request_id']}: verification code {request['verification_code']} "
          f"— waiting for the signer's approval ({what})", flush=True)
    done = client.wait(request["request_id"])
    if done["state"] != "signed":
        raise SystemExit(f"request {request['request_id']} ended {done['state']}: {done.get('failure_reason')}")
    print("  signed", flush=True)
    return done


def main() -> None:
    step("fresh data dir and output dir")
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "trust").mkdir(parents=True)

    step("start the sandbox: broker, HSM token, test PKI, demo unit and signers, simulated phones")
    sandbox, info = start_sandbox()
    try:
        print(f"  base_url {info['base_url']}, client {info['client_id']}")
        run(*KYSO, "cert", "list")
        shutil.copy(info["trust_anchors"][0], OUT / "trust" / "national-root-test.pem")
        client = KysoClient(info["base_url"], client_id=info["client_id"], client_secret=info["client_secret"])
        portal_flow(client, info)
        # The CLI beside a running server: its HSM work goes through the admin socket.
        run(*KYSO, "audit", "checkpoint")
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.wait(timeout=60)

    step("audit log (hash-chained)")
    run(*KYSO, "audit", "list", "--limit", "15")
    run(*KYSO, "audit", "verify")

    step("results")
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(ROOT)}")
    print("\ndemo complete")


def portal_flow(client: KysoClient, info: dict) -> None:  # type: ignore[type-arg]
    chief = credential_of(info, "sbx.ketoan", "vnpt")
    holder = credential_of(info, "sbx.chutk", "viettel")
    root = OUT / "trust" / "national-root-test.pem"
    with tempfile.TemporaryDirectory(prefix="kyso-demo-") as tmp:
        work = Path(tmp)
        order = work / "payment-order.pdf"
        write_payment_order_pdf(order)

        step("DVC portal: the chief accountant certifies the payment order (PAdES B-LT, approved on the phone)")
        document_id = client.upload_document(order)
        request = client.create_request({"credential_id": chief, "format": "pades", "level": "B-LT", "documents": [{
            "document_id": document_id, "title": "Ủy nhiệm chi UNC-2026-000123",
            "summary": "Trả: Trường Tiểu học Thử Nghiệm · Nhận: Công ty Việt Hưng · 125.000.000 VND",
            "field": CHIEF_ACCOUNTANT_FIELD, "certify": True, "reason": "Kế toán trưởng ký duyệt",
            "location": "Hà Nội", "stamp": "Ký bởi: %(signer)s\nNgày ký: %(ts)s"}]},
            idempotency_key="UNC-2026-000123/chief")
        client.download(signed(client, request, "chief accountant")["documents"][0],
                                OUT / "payment-order.chief-accountant.pdf")

        step("DVC portal: the account holder signs the second field (approval signature, PAdES B-LTA)")
        request = client.create_request({"credential_id": holder, "format": "pades", "level": "B-LTA",
                                         "after_request_id": request["request_id"], "documents": [{
            "title": "Ủy nhiệm chi UNC-2026-000123",
            "summary": "Đã có chữ ký kế toán trưởng · 125.000.000 VND", "field": ACCOUNT_HOLDER_FIELD,
            "reason": "Chủ tài khoản ký duyệt", "location": "Hà Nội",
            "stamp": "Ký bởi: %(signer)s\nNgày ký: %(ts)s"}]}, idempotency_key="UNC-2026-000123/holder")
        final = client.download(signed(client, request, "account holder")["documents"][0],
                                OUT / "payment-order.signed.pdf")

        step("the same order as XML: CAdES B-LT detached (.p7s) and enveloping (.p7m)")
        xml = OUT / "payment-order.xml"
        xml.write_bytes(payment_xml())


        request = client.create_request({"credential_id": chief, "format": "cades", "level": "B-LT", "documents": [
            {"content": base64.b64encode(xml.read_bytes()).decode(), "title": "payment-order.xml"},
            {"content": base64.b64encode(xml.read_bytes()).decode(), "title": "payment-order.xml", "enveloping": True}]})
        done = signed(client, request, "chief accountant, two documents, one approval")
        client.download(done["documents"][0], OUT / "payment-order.xml.p7s")
        client.download(done["documents"][1], OUT / "payment-order.xml.p7m")

        step("the treasury's XML: each role signs inside the document (XAdES; data by Id, signature in its container)")
        treasury_xml = work / "payment-order.treasury.xml"
        treasury_xml.write_bytes(payment_order_xml())
        request = client.create_request({"credential_id": chief, "format": "xades", "level": "B-LT", "documents": [{
            "content": base64.b64encode(treasury_xml.read_bytes()).decode(), "title": "Giấy rút dự toán UNC-2026-000123",
            "summary": "Trả: Trường Tiểu học Thử Nghiệm · Nhận: Công ty Việt Hưng · 125.000.000 VND",
            "reference_id": XML_DATA_ID, "placement": XML_CHIEF_ACCOUNTANT_PLACEMENT}]})
        signed(client, request, "chief accountant")
        request = client.create_request({"credential_id": holder, "format": "xades", "level": "B-LT",
                                         "after_request_id": request["request_id"], "documents": [{
            "title": "Giấy rút dự toán UNC-2026-000123", "summary": "Đã có chữ ký kế toán trưởng · 125.000.000 VND",
            "reference_id": XML_DATA_ID, "placement": XML_ACCOUNT_HOLDER_PLACEMENT}]})
        signed_xml = client.download(signed(client, request, "account holder")["documents"][0],
                                     OUT / "payment-order.signed.xml")

        step("CSC API: authorize (waits for the approval) and signHash")
        digest = hashlib.sha256(xml.read_bytes()).digest()
        auth = client.authorize(holder, [digest], description="payment-order.xml")
        [signature] = client.sign_hash(holder, auth.sad, [digest], "1.2.840.10045.4.3.2")
        print(f"  ECDSA signature over SHA-256(payment-order.xml): {len(signature)} bytes (DER)")

        step("delegated mode: a certificate whose key stays at VNPT SmartCA; the signer confirms in VNPT's app")
        delegated_credential = link_delegated("sbx.chutk", "vnpt", "001080000999")
        request = client.create_request({"credential_id": delegated_credential, "format": "cades", "level": "B-T",
                                         "documents": [{"content": base64.b64encode(xml.read_bytes()).decode(),
                                                        "title": "payment-order.xml"}]})
        done = signed(client, request, "account holder, in the provider's app (emulated)")
        shutil.copy(xml, OUT / "payment-order.vnpt-smartca.xml")  # each .p7s beside its content
        client.download(done["documents"][0], OUT / "payment-order.vnpt-smartca.xml.p7s")

        step("validate (ETSI verdicts) from the embedded data alone: nothing fetched, revocation required")
        run(*KYSO, "verify", str(OUT / "payment-order.chief-accountant.pdf"), "--trust", str(root))
        run(*KYSO, "verify", str(final), "--trust", str(root))
        run(*KYSO, "verify", str(OUT / "payment-order.xml.p7s"), "--content", str(xml), "--trust", str(root))
        run(*KYSO, "verify", str(OUT / "payment-order.xml.p7m"), "--trust", str(root))
        run(*KYSO, "verify", str(signed_xml), "--trust", str(root))
        step("validate a B-B signature: its revocation data fetched from the provider's OCSP/CRL")
        run(*KYSO, "verify", str(OUT / "payment-order.vnpt-smartca.xml.p7s"), "--content",
            str(OUT / "payment-order.vnpt-smartca.xml"), "--trust", str(root), "--fetch")

        step("verify independently: OpenSSL (CMS), xmlsec1 (XML) and poppler's pdfsig (PDF)")
        for signature_id in xml_signature_ids(signed_xml):  # both, the first still valid after the second
            run("xmlsec1", "--verify", "--trusted-pem", str(root), "--enabled-key-data", "x509",
                "--id-attr:Id", XML_DATA_ID, "--id-attr:Id", f"{DS}:Signature", "--id-attr:Id", f"{DS}:KeyInfo",
                "--id-attr:Id", f"{XADES}:SignedProperties", "--node-id", signature_id, str(signed_xml))
        run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(OUT / "payment-order.xml.p7s"),
            "-content", str(xml), "-CAfile", str(root), "-purpose", "any", "-out", "/dev/null")
        run("openssl", "cms", "-verify", "-inform", "DER", "-in", str(OUT / "payment-order.xml.p7m"),
            "-CAfile", str(root), "-purpose", "any", "-out", "/dev/null")
        run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
            str(OUT / "payment-order.vnpt-smartca.xml.p7s"), "-content", str(OUT / "payment-order.vnpt-smartca.xml"),
            "-CAfile", str(root), "-purpose", "any", "-out", "/dev/null")
        nss = work / "nss"
        nss.mkdir()
        run("certutil", "-N", "--empty-password", "-d", f"sql:{nss}")
        run("certutil", "-A", "-n", "kyso-test-root", "-t", "CT,C,C", "-i", str(root), "-d", f"sql:{nss}")
        report = run("pdfsig", "-nssdir", f"sql:{nss}", str(final), capture=True)
        print(report)
        if report.count("Signature is Valid") < 2 or report.count("Certificate is Trusted") < 2:
            raise SystemExit("pdfsig did not accept both signatures")


DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"


def xml_signature_ids(path: Path) -> list[str]:
    from lxml import etree

    return [str(s.get("Id")) for s in etree.parse(str(path)).getroot().iter(f"{{{DS}}}Signature")]


if __name__ == "__main__":
    main()
