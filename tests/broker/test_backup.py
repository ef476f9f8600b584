"""Backup → wipe → restore, then ``kyso audit verify`` passes and signing works, on SQLite and PostgreSQL.

A restored data dir has its own token store, and SoftHSM serves one store per process 
(it reads its configuration once): each phase runs the real CLI in a subprocess, several commands per process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kyso.operations import backup_format
from tests.support import REPO, flip_byte, fresh_schema, openssl_cms_verify, postgres_url

_DRIVER = r"""
import contextlib, io, json, os, sys
from kyso.cli import run

results = []
for step in json.loads(sys.argv[1]):
    saved = {k: os.environ.get(k) for k in step.get("env", {})}
    os.environ.update(step.get("env", {}))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(step["args"])
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    results.append({"args": step["args"], "code": code, "out": out.getvalue(), "err": err.getvalue()})
print("\n" + json.dumps(results))
"""


def cli_process(data_dir: Path, steps: list[Any], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run ``kyso --data-dir DATA_DIR ...`` for each step in one fresh process; steps are argument lists
    or ``(args, extra_env)``."""
    plan = [{"args": ["--data-dir", str(data_dir), *s[0]], "env": s[1]} if isinstance(s, tuple)
            else {"args": ["--data-dir", str(data_dir), *s]} for s in steps]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(plan)], cwd=REPO, env=environment,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def ok(result: dict[str, Any]) -> str:
    assert result["code"] == 0, f"{result['args']}: {result['out']}{result['err']}"
    return str(result["out"])


def user_pin(data_dir: Path) -> str:
    return str(json.loads((data_dir / "secrets.json").read_text())["hsm_user_pin"])


def first_phase(data_dir: Path, work: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A sandbox with a signer and a credential, one signature, and a backup with the token."""
    (work / "order.xml").write_text("<order>Ủy nhiệm chi số 1</order>", encoding="utf-8")
    results = cli_process(data_dir, [
        ["init", "--sandbox"],
        ["unit", "add", "U001", "Trường Tiểu học Nguyễn Trãi"],
        ["user", "add", "lan", "--unit", "U001", "--name", "Nguyễn Thị Lan", "--id", "001185000123",
         "--role", "chief-accountant"],
        ["cert", "enroll", "--user", "lan", "--ca", "vnpt", "--key", "ec-p256"],
        ["sign", "--unconfirmed", str(work / "order.xml"), "--out", str(work / "before.p7s"), "--user", "lan",
         "--format", "cades"],
        ["backup", str(work / "backup"), "--include-token"],
    ], env)
    for result in results:
        ok(result)
    assert "protected by the token's PINs" in results[-1]["out"]
    assert "documents are not included" in results[-1]["out"]
    shutil.copy(data_dir / "pki" / "root" / "cert.pem", work / "root.pem")
    return results


def assert_backup_holds_no_secret(backup: Path, pin: str) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    names = set(manifest["files"])
    assert "secrets.json" not in names and "pki/root/cert.pem" in names  # the test roots go on after a restore
    assert manifest["token_included"] and any(name.startswith("token/") for name in names)
    assert not manifest["documents_included"] and not any(name.startswith("blobs/") for name in names)
    assert {"database.sqlite", "database.pgdump"} & names and "kyso.toml" in names and "audit-anchors.jsonl" in names
    for path in backup.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert pin.encode() not in data, path
            assert b"PRIVATE KEY" not in data or path.relative_to(backup).parts[0] == "pki", path
            assert path.stat().st_mode & 0o077 == 0, path


def test_backup_wipe_restore_sqlite(tmp_path: Path) -> None:
    data_dir, backup = tmp_path / "data", tmp_path / "backup"
    first_phase(data_dir, tmp_path)
    pin = user_pin(data_dir)
    assert_backup_holds_no_secret(backup, pin)
    damaged = tmp_path / "damaged"
    shutil.copytree(backup, damaged)
    flip_byte(damaged / "database.sqlite", 4000)
    with pytest.raises(backup_format.BackupCorrupt, match="database.sqlite"):
        backup_format.read_backup(damaged)
    shutil.rmtree(data_dir)  # the machine is lost

    doc = str(tmp_path / "order.xml")
    results = cli_process(data_dir, [
        ["restore", str(backup)],  # no token store to sign the restore with: refused, nothing written
        (["restore", str(backup), "--include-token"], {"KYSO_HSM_USER_PIN": pin}),
        ["audit", "verify"],
        ["sign", "--unconfirmed", doc, "--out", str(tmp_path / "after.p7s"), "--user", "lan", "--format", "cades"],
        ["audit", "checkpoint"],  # an anchor newer than the backup...
        ["restore", str(backup)],
        ["restore", str(backup), "--force"],  # ...given up by a second restore over the live data dir
        ["audit", "verify"],
        ["sign", "--unconfirmed", doc, "--out", str(tmp_path / "again.p7s"), "--user", "lan", "--format", "cades"],
        ["audit", "list", "--action", "audit.restored"],
    ], {"KYSO_HSM_USER_PIN": pin})
    no_token, restored, verified, signed, _, refused, forced, verified_again, signed_again, listed = results
    assert no_token["code"] == 2 and "--include-token" in no_token["err"], no_token
    assert "returns to the checkpoint of event" in ok(restored)
    assert "audit chain intact" in ok(verified)
    ok(signed)
    assert refused["code"] == 2 and refused["err"].startswith("error [restore_target_not_empty]:"), refused
    ok(forced)
    out = ok(verified_again)
    assert "audit chain intact" in out and "superseded by 2 restore" in out, out
    ok(signed_again)
    assert ok(listed).count("audit.restored") == 1  # the first restore's event went with its timeline
    # The same test root as before the loss: no CA was generated again.
    assert (data_dir / "pki" / "root" / "cert.pem").read_bytes() == (tmp_path / "root.pem").read_bytes()
    assert (data_dir / "secrets.json").stat().st_mode & 0o777 == 0o600
    for name in ("after.p7s", "again.p7s"):
        assert openssl_cms_verify(tmp_path / name, tmp_path / "root.pem", tmp_path / "order.xml").returncode == 0


def test_backup_wipe_restore_postgresql(tmp_path: Path) -> None:
    url = postgres_url()
    fresh_schema(url)
    env = {"KYSO_DATABASE_URL": url}
    data_dir, backup = tmp_path / "data", tmp_path / "backup"
    first_phase(data_dir, tmp_path, env)
    pin = user_pin(data_dir)
    assert_backup_holds_no_secret(backup, pin)
    assert json.loads((backup / "manifest.json").read_text())["database"]["kind"] == "postgresql"
    shutil.rmtree(data_dir)
    fresh_schema(url)

    results = cli_process(data_dir, [
        (["restore", str(backup), "--include-token"], {"KYSO_HSM_USER_PIN": pin}),
        ["audit", "verify"],
        ["sign", "--unconfirmed", str(tmp_path / "order.xml"), "--out", str(tmp_path / "after.p7s"),
         "--user", "lan", "--format", "cades"],
        ["audit", "verify"],
    ], env)
    restored, verified, signed, verified_again = results
    ok(restored)
    assert "audit chain intact" in ok(verified)
    ok(signed)
    assert "audit chain intact" in ok(verified_again)
    assert openssl_cms_verify(tmp_path / "after.p7s", tmp_path / "root.pem", tmp_path / "order.xml").returncode == 0


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "database.sqlite").write_bytes(b"x")
    manifest = {"format": "kyso-backup", "version": 1, "files": {"database.sqlite": {"sha256": "00" * 32, "size": 1}}}
    (backup / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(backup_format.BackupCorrupt, match="database.sqlite"):
        backup_format.read_backup(backup)
    (backup / "manifest.json").unlink()
    with pytest.raises(backup_format.BackupCorrupt):
        backup_format.read_backup(backup)


def test_a_failed_restore_leaves_nothing_and_documents_come_on_request(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first_phase(data_dir, tmp_path)
    upload = data_dir / "blobs" / "documents" / "d1"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"%PDF-1.7 uploaded")
    [with_documents] = cli_process(data_dir, [["backup", str(tmp_path / "full"), "--include-token", "--with-documents"]])
    assert "documents included" in ok(with_documents)
    assert "blobs/documents/d1" in json.loads((tmp_path / "full" / "manifest.json").read_text())["files"]
    pin = user_pin(data_dir)
    shutil.rmtree(data_dir)

    [wrong] = cli_process(data_dir, [(["restore", str(tmp_path / "full"), "--include-token"],
                                      {"KYSO_HSM_USER_PIN": "not-the-pin"})])
    assert wrong["code"] == 2 and wrong["err"].startswith("error ["), wrong
    assert not data_dir.exists()  # no softhsm/, nothing: the retry is not refused

    pin_file = tmp_path / "pin.txt"
    pin_file.write_text(pin + "\n")
    no_terminal, restored, verified, housekeeping = cli_process(data_dir, [
        ["restore", str(tmp_path / "full"), "--include-token"],  # stdin is not a terminal, no PIN given
        ["restore", str(tmp_path / "full"), "--include-token", "--pin-file", str(pin_file)],
        ["audit", "verify"],
        ["housekeeping"],
    ])
    assert no_terminal["code"] == 2 and no_terminal["err"].startswith("error [pin_required]:"), no_terminal
    assert len(no_terminal["err"].strip().splitlines()) == 1 and "GetPassWarning" not in no_terminal["err"]
    assert "documents restored" in ok(restored)
    assert "audit chain intact" in ok(verified)
    assert "0 upload(s) past 30 days deleted" in ok(housekeeping)
    assert upload.read_bytes() == b"%PDF-1.7 uploaded" and upload.stat().st_mode & 0o777 == 0o600
    assert upload.parent.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "pki" / "root" / "cert.pem").read_bytes() == (tmp_path / "root.pem").read_bytes()
