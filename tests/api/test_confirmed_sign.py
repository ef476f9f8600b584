"""``kyso sign`` waits for the signer's approval, then signs exactly what was approved."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from asn1crypto import x509

from biometrics import Decision
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso.cli import run
from kyso_device.client import DeviceClient
from signer import validate
from tests.support import openssl_cms_verify


def decide_when_seen(device: DeviceClient, title: str, decision: Decision) -> threading.Thread:
    """The signer's phone: wait for the request about ``title`` and decide."""

    def phone() -> None:
        for _ in range(20):
            for request in device.pending(wait=5):
                if request["documents"][0]["title"] == title:
                    device.decide(request, decision)
                    return

    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    return thread


def test_pades_and_cades_after_approval(phone: DeviceClient, data_dir: Path, tmp_path: Path, root_pem: Path,
                                        trust_roots: list[x509.Certificate], capsys: pytest.CaptureFixture[str]) -> None:
    order = tmp_path / "order-confirmed.pdf"
    write_payment_order_pdf(order)
    thread = decide_when_seen(phone, order.name, Decision.APPROVE)
    code = run(["--data-dir", str(data_dir), "sign", str(order), "--out", str(tmp_path / "signed.pdf"), "--user", "lan",
                "--field", CHIEF_ACCOUNTANT_FIELD, "--certify"])
    out, err = capsys.readouterr()
    thread.join(5)
    assert code == 0, err
    assert "verification code" in out
    [report] = validate.validate_pdf(tmp_path / "signed.pdf", trust_roots)
    assert report.ok

    xml = tmp_path / "order-confirmed.xml"
    xml.write_bytes("<order>Đã duyệt</order>".encode())
    thread = decide_when_seen(phone, xml.name, Decision.APPROVE)
    code = run(["--data-dir", str(data_dir), "sign", str(xml), "--out", str(tmp_path / "order.p7s"), "--user", "lan",
                "--format", "cades"])
    capsys.readouterr()
    thread.join(5)
    assert code == 0
    assert openssl_cms_verify(tmp_path / "order.p7s", root_pem, xml).returncode == 0


def test_a_refusal_signs_nothing(phone: DeviceClient, data_dir: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    order = tmp_path / "order-refused.pdf"
    write_payment_order_pdf(order)
    thread = decide_when_seen(phone, order.name, Decision.REFUSE)
    code = run(["--data-dir", str(data_dir), "sign", str(order), "--out", str(tmp_path / "signed.pdf"), "--user", "lan",
                "--field", CHIEF_ACCOUNTANT_FIELD])
    _, err = capsys.readouterr()
    thread.join(5)
    assert code == 2 and err.startswith("error [request_rejected]:")
    assert not (tmp_path / "signed.pdf").exists()
    assert not list(tmp_path.glob("*.part"))
