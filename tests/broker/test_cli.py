"""The admin CLI in process (same token store as the session) and, for a wrong PIN, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, Unit, User
from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from tests.conftest import Enrolled
from tests.support import REPO, openssl_cms_verify, require_tool


def db_state(runtime: Runtime) -> tuple[int, ...]:
    """Rows an admin command could add. Audit events count only the CLI's own: a server an earlier test
    started may still be ending that test's requests in the background."""
    with transaction(runtime.sessions) as s:
        rows = tuple(s.scalar(select(func.count()).select_from(m)) or 0 for m in (Unit, User, Credential))
        by_cli = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.actor.startswith("cli:")))
        return (*rows, by_cli or 0)


def test_admin_flow(kyso, runtime: Runtime, enrolled: Enrolled, tmp_path: Path, root_pem: Path,  # type: ignore[no-untyped-def]
                    emulators: object) -> None:
    assert kyso("unit", "add", "CLI1", "Ban Quản lý dự án")[0] == 0
    assert kyso("user", "add", "an", "--unit", "CLI1", "--name", "Đỗ Văn An", "--id", "001077000111",
                "--role", "account-holder")[0] == 0
    code, out, _ = kyso("cert", "enroll", "--user", "an", "--ca", "misa", "--key", "ec-p256")
    assert code == 0 and "MST:001077000111" in out
    code, out, _ = kyso("cert", "list", "--user", "an")
    assert code == 0 and "misa" in out and "active" in out
    code, out, _ = kyso("unit", "list")
    assert "CLI1" in out and "remote" in out
    code, out, _ = kyso("user", "list", "--unit", "CLI1")
    assert "an" in out and "account-holder" in out

    content = tmp_path / "order.xml"
    content.write_bytes("<order>Đỗ Văn An</order>".encode())
    assert kyso("sign", "--unconfirmed", str(content), "--out", str(tmp_path / "order.xml.p7s"), "--user", "an", "--format", "cades")[0] == 0
    assert openssl_cms_verify(tmp_path / "order.xml.p7s", root_pem, content).returncode == 0
    code, out, _ = kyso("verify", str(tmp_path / "order.xml.p7s"), "--content", str(content), "--trust", str(root_pem),
                        "--fetch")  # a B-B signature: its revocation status comes from the provider's responder
    assert code == 0 and "TOTAL_PASSED" in out
    content.write_bytes(b"<order>changed</order>")
    code, out, _ = kyso("verify", str(tmp_path / "order.xml.p7s"), "--content", str(content))
    assert code == 1 and "HASH_FAILURE" in out

    pdf = tmp_path / "order.pdf"
    write_payment_order_pdf(pdf)
    assert kyso("sign", "--unconfirmed", str(pdf), "--out", str(tmp_path / "signed.pdf"), "--user", "an", "--field", "ChuTaiKhoan")[0] == 0
    code, out, _ = kyso("verify", str(tmp_path / "signed.pdf"), "--fetch")
    assert code == 0 and "TOTAL_PASSED" in out

    code, out, _ = kyso("audit", "list", "--action", "sign.cades")
    assert code == 0 and "sign.cades" in out
    assert kyso("audit", "verify")[0] == 0
    with transaction(runtime.sessions) as s:
        credential_id = s.scalar(select(Credential.id).join(User).where(User.username == "an"))
    code, out, _ = kyso("cert", "show", credential_id)
    assert code == 0 and "MISA-CA (TEST)" in out
    code, out, _ = kyso("cert", "revoke", credential_id, "--reason", "key_compromise", "--yes")
    assert code == 0
    code, _, err = kyso("sign", "--unconfirmed", str(pdf), "--out", str(tmp_path / "again.pdf"), "--credential", credential_id)
    assert code == 2 and "credential_not_usable" in err
    assert not (tmp_path / "again.pdf").exists()


@pytest.mark.parametrize(
    ("make_args", "code_word"),
    [
        (lambda d, e: ["cert", "enroll", "--user", "nobody", "--ca", "vnpt"], "not_found"),
        (lambda d, e: ["cert", "enroll", "--user", "usb", "--ca", "vnpt"], "unit_in_usb_token_mode"),
        (lambda d, e: ["cert", "enroll", "--user", "lan", "--ca", "acme"], "unknown_provider"),
        (lambda d, e: ["cert", "enroll", "--user", "lan", "--ca", "vnpt", "--key", "dsa-1024"], "invalid_input"),
        (lambda d, e: ["sign", "--unconfirmed", str(d / "junk.pdf"), "--out", str(d / "o.pdf"), "--user", "lan"], "invalid_document"),
        (lambda d, e: ["sign", "--unconfirmed", str(d / "encrypted.pdf"), "--out", str(d / "o.pdf"), "--user", "lan"], "invalid_document"),
        (lambda d, e: ["sign", "--unconfirmed", str(d / "missing.pdf"), "--out", str(d / "o.pdf"), "--user", "lan"], "invalid_input"),
        (lambda d, e: ["sign", "--unconfirmed", str(d / "junk.pdf"), "--out", str(d / "o.pdf"), "--user", "ghost"], "not_found"),
        (lambda d, e: ["verify", str(d / "missing.pdf")], "invalid_input"),
        (lambda d, e: ["verify", str(d / "junk.pdf")], "invalid_document"),
        (lambda d, e: ["user", "add", "x", "--unit", "nope", "--name", "X", "--id", "001099000999"], "not_found"),
        (lambda d, e: ["unit", "add", "U001", "duplicate"], "conflict"),
        (lambda d, e: ["cert", "show", "no-such-credential"], "not_found"),
    ],
)
def test_bad_input_gives_one_clear_line_and_changes_nothing(kyso, runtime: Runtime, enrolled: Enrolled,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path, make_args, code_word: str) -> None:
    if kyso("unit", "list")[1].find("USB1") < 0:
        assert kyso("unit", "add", "USB1", "Đơn vị dùng USB token", "--mode", "usb-token")[0] == 0
        assert kyso("user", "add", "usb", "--unit", "USB1", "--name", "Vũ Thị Hoa", "--id", "001199000222")[0] == 0
    (tmp_path / "junk.pdf").write_bytes(b"%PDF-1.4\nnot a pdf at all")
    plain = tmp_path / "plain.pdf"
    write_payment_order_pdf(plain)
    subprocess.run([require_tool("qpdf"), "--encrypt", "u", "o", "256", "--", str(plain), str(tmp_path / "encrypted.pdf")],
                   check=True)
    before = db_state(runtime)
    code, out, err = kyso(*make_args(tmp_path, enrolled))
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error [{code_word}]:"), err
    assert db_state(runtime) == before
    assert not (tmp_path / "o.pdf").exists()


def test_usage_errors_exit_non_zero(kyso) -> None:  # type: ignore[no-untyped-def]
    code, _, err = kyso("unit", "set-mode", "U001", "bogus")
    assert code == 2 and "bogus" in err


def test_wrong_pin_in_a_fresh_process(data_dir: Path, enrolled: Enrolled, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    env = {**os.environ, "KYSO_HSM_USER_PIN": "not-the-pin"}
    result = subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(copy), "cert", "enroll",
                             "--user", "lan", "--ca", "vnpt"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error [hsm_wrong_pin]:"), result.stderr
    assert "not-the-pin" not in result.stderr + result.stdout


def test_init_refuses_a_used_data_dir(kyso) -> None:  # type: ignore[no-untyped-def]
    code, _, err = kyso("init")
    assert code == 2 and "conflict" in err


def test_unconfirmed_signing_needs_a_sandbox(kyso, enrolled: Enrolled, tmp_path: Path,  # type: ignore[no-untyped-def]
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    content = tmp_path / "a.xml"
    content.write_bytes(b"<a/>")
    monkeypatch.setenv("KYSO_SANDBOX", "false")
    code, _, err = kyso("sign", "--unconfirmed", str(content), "--out", str(tmp_path / "a.p7s"), "--user", "lan",
                        "--format", "cades")
    assert code == 2 and err.startswith("error [policy_violation]:")
    assert not (tmp_path / "a.p7s").exists()


def test_renew_replaces_the_key_and_the_expiry_report_finds_it(kyso, runtime: Runtime,  # type: ignore[no-untyped-def]
                                                               enrolled: Enrolled) -> None:
    code, out, err = kyso("cert", "enroll", "--user", "hung", "--ca", "nacencomm")
    assert code == 0, out + err
    old_id = out.split()[1]
    code, out, err = kyso("cert", "expiring", "--days", "10000")
    assert code == 0 and old_id[:12] in out  # tables show ids shortened
    code, out, err = kyso("cert", "renew", old_id)
    assert code == 0 and "superseded" in out, out
    new_id = out.split()[1]
    with transaction(runtime.sessions) as s:
        old, new = s.get(Credential, old_id), s.get(Credential, new_id)
        assert old is not None and new is not None
        assert old.status.value == "revoked" and new.status.value == "active" and new.serial_hex != old.serial_hex
        assert runtime.ca("nacencomm").status(int(old.serial_hex, 16)).reason == "superseded"
    code, out, err = kyso("cert", "renew", old_id)  # a revoked credential is not renewed
    assert code == 2 and "credential_not_usable" in out + err
    code, out, err = kyso("cert", "expiring", "--days", "0")
    assert code == 0 and new_id[:12] not in out
