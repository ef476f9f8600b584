"""The integrators' example runs as written: docs/examples/sign_pdf_csc.py signs PDFs through kyso."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import x509

from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from signer import validate
from tests.conftest import Enrolled
from tests.support import REPO, AutoApprover, relying_system_client

EXAMPLE = REPO / "docs" / "examples" / "sign_pdf_csc.py"


@pytest.fixture(scope="module")
def client_credentials(runtime: Runtime, enrolled: Enrolled) -> tuple[str, str]:
    return relying_system_client(runtime, "dvc-examples")


def test_pyhanko_csc_signer_example_with_an_rsa_pss_credential(
        live_server: str, client_credentials: tuple[str, str], phones: AutoApprover,
        enrolled: Enrolled, tmp_path: Path, trust_roots: list[x509.Certificate]) -> None:
    source = tmp_path / "order.pdf"
    write_payment_order_pdf(source)
    done = subprocess.run([sys.executable, str(EXAMPLE), live_server, *client_credentials, enrolled.rsa_pss,
                           str(source), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("by-hand.pdf", "kyso-client.pdf"):
        [report] = validate.validate_pdf(tmp_path / name, trust_roots)
        assert report.ok, (name, report)
