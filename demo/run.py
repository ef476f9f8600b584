"""The end-to-end demo (``make demo``), driven through the ``kyso`` CLI as an administrator would.

A unit with a chief accountant and an account holder, their certificates from two providers,
their phones enrolled as approval devices (the reference client ``kyso-device`` stands in for
the app), a payment order signed by both (PAdES, two incremental signatures, each approved on the
signer's phone), the same order as XML signed with CAdES (detached and enveloping), every result
verified by kyso and by independent verifiers (OpenSSL, poppler's pdfsig), and the results in
``demo-out/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from demo.documents import ACCOUNT_HOLDER_FIELD, CHIEF_ACCOUNTANT_FIELD, payment_xml, write_payment_order_pdf

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".kyso-demo"
OUT = ROOT / "demo-out"
KYSO = [str(Path(sys.executable).with_name("kyso")), "--data-dir", str(DATA_DIR)]
KYSO_DEVICE = str(Path(sys.executable).with_name("kyso-device"))


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


def kyso(*args: str) -> None:
    run(*KYSO, *args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    log = (DATA_DIR / "server.log").open("wb")
    server = subprocess.Popen([*KYSO, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(120):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("kyso serve did not become ready; see .kyso-demo/server.log")


def enroll_phone(username: str, base_url: str) -> Path:
    out = run(*KYSO, "device", "activate", "--user", username, "--no-qr", capture=True)
    print(out, end="")
    code = out.split(": ", 1)[1].split()[0]
    state = DATA_DIR / "phones" / f"{username}.json"
    run(KYSO_DEVICE, "enroll", "--base-url", base_url, "--code", code, "--name", f"{username}'s phone",
        "--state", str(state))
    return state


def main() -> None:
    step("fresh data dir and output dir")
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    kyso("init", "--sandbox")

    step("a budget-using unit, its chief accountant and account holder")
    kyso("unit", "add", "1012345", "Trường Tiểu học Nguyễn Trãi")
    kyso("user", "add", "lan.nt", "--unit", "1012345", "--name", "Nguyễn Thị Lan", "--id", "001185000123",
         "--role", "chief-accountant")
    kyso("user", "add", "hung.tv", "--unit", "1012345", "--name", "Trần Văn Hùng", "--id", "001080000456",
         "--role", "account-holder")

    step("keys made in the HSM, certified by VNPT SmartCA and Viettel-CA (test CAs)")
    kyso("cert", "enroll", "--user", "lan.nt", "--ca", "vnpt", "--key", "rsa-2048")
    kyso("cert", "enroll", "--user", "hung.tv", "--ca", "viettel", "--key", "rsa-2048")
    kyso("cert", "list")
    kyso("cert", "roots", "--out", str(OUT / "trust"))

    step("the approval service, and each signer's phone enrolled with a one-time activation code")
    port = free_port()
    base_url = f"http://localhost:{port}"
    os.environ["KYSO_PUBLIC_BASE_URL"] = base_url
    server = start_server(port)
    phones: list[subprocess.Popen[bytes]] = []
    try:
        for username in ("lan.nt", "hung.tv"):
            state = enroll_phone(username, base_url)
            # Stands in for the signer looking at the phone and approving with a fingerprint.
            phones.append(subprocess.Popen([KYSO_DEVICE, "watch", "--count", "2", "--state", str(state)]))
        sign_and_verify()
    finally:
        for process in [*phones, server]:
            process.terminate()
        for process in [*phones, server]:
            process.wait(timeout=30)

    step("audit log")
    kyso("audit", "list", "--limit", "30")
    kyso("audit", "verify")

    step("results")
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(ROOT)}")
    print("\ndemo complete")


def sign_and_verify() -> None:
    with tempfile.TemporaryDirectory(prefix="kyso-demo-") as tmp:
        work = Path(tmp)
        order = work / "payment-order.pdf"
        write_payment_order_pdf(order)

        step("payment order: the chief accountant certifies, the account holder approves (PAdES); "
             "each signature waits for the signer's approval on the phone")
        first = OUT / "payment-order.chief-accountant.pdf"
        final = OUT / "payment-order.signed.pdf"
        kyso("sign", str(order), "--out", str(first), "--user", "lan.nt", "--field", CHIEF_ACCOUNTANT_FIELD,
             "--certify", "--reason", "Kế toán trưởng ký duyệt", "--location", "Hà Nội",
             "--stamp", "KẾ TOÁN TRƯỞNG\nKý bởi: %(signer)s\nNgày ký: %(ts)s")
        kyso("sign", str(first), "--out", str(final), "--user", "hung.tv", "--field", ACCOUNT_HOLDER_FIELD,
             "--reason", "Chủ tài khoản ký duyệt", "--location", "Hà Nội",
             "--stamp", "CHỦ TÀI KHOẢN\nKý bởi: %(signer)s\nNgày ký: %(ts)s")

        step("the same order as XML: CAdES detached (.p7s) and enveloping (.p7m)")
        xml = OUT / "payment-order.xml"
        xml.write_bytes(payment_xml())
        kyso("sign", str(xml), "--out", str(OUT / "payment-order.xml.p7s"), "--user", "lan.nt", "--format", "cades")
        kyso("sign", str(xml), "--out", str(OUT / "payment-order.xml.p7m"), "--user", "hung.tv", "--format", "cades",
             "--enveloping")

        step("verify with kyso (pyHanko validator, test national root as the only trust anchor)")
        root = next((OUT / "trust").glob("*.pem"))
        kyso("verify", str(final), "--trust", str(root))
        kyso("verify", str(OUT / "payment-order.xml.p7s"), "--content", str(xml), "--trust", str(root))
        kyso("verify", str(OUT / "payment-order.xml.p7m"), "--trust", str(root))

        step("verify independently: OpenSSL (CMS) and poppler's pdfsig (PDF)")
        run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(OUT / "payment-order.xml.p7s"),
            "-content", str(xml), "-CAfile", str(root), "-purpose", "any", "-out", "/dev/null")
        run("openssl", "cms", "-verify", "-inform", "DER", "-in", str(OUT / "payment-order.xml.p7m"),
            "-CAfile", str(root), "-purpose", "any", "-out", "/dev/null")
        nss = work / "nss"
        nss.mkdir()
        run("certutil", "-N", "--empty-password", "-d", f"sql:{nss}")
        run("certutil", "-A", "-n", "kyso-test-root", "-t", "CT,C,C", "-i", str(root), "-d", f"sql:{nss}")
        report = run("pdfsig", "-nssdir", f"sql:{nss}", str(final), capture=True)
        print(report)
        if report.count("Signature is Valid") != 2 or report.count("Certificate is Trusted") != 2:
            raise SystemExit("pdfsig did not accept both signatures")


if __name__ == "__main__":
    main()
