"""The administrator's CLI: --json with whole ids, id prefixes, usage errors, words as typed, the
confirmation before a revocation, disabled users (CLI and REST), webhook allowlists, 80 columns."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from broker import approvals, clients, credentials, directory
from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, CredentialStatus, Role, SigningMode
from broker.runtime import Runtime
from hsm import KeyAlgorithm
from kyso_client import KysoClient
from tests.conftest import ACTOR, Enrolled

UNIT = "ADM1"


@pytest.fixture(scope="module")
def unit(runtime: Runtime, enrolled: Enrolled) -> str:
    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, UNIT, "Ban Quản trị hệ thống", SigningMode.REMOTE)
    return UNIT


def add_user(runtime: Runtime, username: str, national_id: str, role: Role = Role.OTHER) -> None:
    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username=username, unit_code=UNIT, full_name="Hoàng Thị Quản Trị",
                           national_id=national_id, role=role)


def enroll(runtime: Runtime, username: str, provider: str = "vnpt") -> str:
    with transaction(runtime.sessions) as s:
        return credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca(provider), username=username,
                                  key_algorithm=KeyAlgorithm.EC_P256).id


def one_error_line(err: str, code: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error [{code}]: "), err
    return lines[0]


def events(runtime: Runtime, action: str) -> list[AuditEvent]:
    with transaction(runtime.sessions) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# -- --json ----------------------------------------------------------------------------------------------


def test_json_lists_and_shows_parse_and_hold_whole_ids(kyso, runtime: Runtime, enrolled: Enrolled,  # type: ignore[no-untyped-def]
                                                       unit: str) -> None:
    code, out, err = kyso("cert", "list", "--json")
    assert code == 0, err
    listed = {c["id"]: c for c in json.loads(out)}
    for full in (enrolled.rsa, enrolled.rsa_pss, enrolled.ec):
        assert len(full) == 32 and full in listed
    assert listed[enrolled.rsa]["user"] == "lan" and listed[enrolled.rsa]["status"] == "active"

    code, out, _ = kyso("cert", "show", enrolled.ec, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["id"] == enrolled.ec and shown["provider"] == "viettel" and shown["chain"]

    code, out, _ = kyso("user", "list", "--json")
    users = {u["username"]: u for u in json.loads(out)}
    assert users["lan"]["role"] == "chief-accountant" and users["lan"]["status"] == "active"
    assert enrolled.rsa in users["lan"]["credentials"]
    code, out, _ = kyso("user", "show", "hung", "--json")
    assert code == 0 and json.loads(out)["full_name"] == "Trần Văn Hùng"

    code, out, _ = kyso("unit", "list", "--json")
    assert any(u["code"] == "U001" and u["mode"] == "remote" for u in json.loads(out))
    code, out, _ = kyso("cert", "expiring", "--days", "100000", "--json")
    assert code == 0 and enrolled.rsa in {c["id"] for c in json.loads(out)}
    code, out, _ = kyso("device", "list", "--user", "lan", "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    code, out, _ = kyso("audit", "list", "--limit", "5", "--json")
    assert code == 0 and len(json.loads(out)) == 5 and all(len(e["hash"]) == 64 for e in json.loads(out))
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-json", [unit])
        client, _ = clients.add_client(s, ACTOR, "dvc-json")
        client_id = client.client_id
    code, out, _ = kyso("rs", "list", "--json")
    assert code == 0 and {"name": "dvc-json", "units": [unit]}.items() <= next(
        r for r in json.loads(out) if r["name"] == "dvc-json").items()
    code, out, _ = kyso("client", "list", "--json")
    assert code == 0 and client_id in {c["client_id"] for c in json.loads(out)}
    code, out, _ = kyso("rs", "show", "dvc-json", "--json")
    assert code == 0 and json.loads(out)["clients"] == [client_id]


def test_tables_fit_80_columns_with_ids_shortened(kyso, enrolled: Enrolled,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for args in (["cert", "list"], ["cert", "expiring", "--days", "100000"], ["user", "list"],
                 ["audit", "list", "--limit", "5"], ["cert", "show", enrolled.rsa]):
        code, out, _ = kyso(*args)
        assert code == 0
        assert max(len(line) for line in out.splitlines()) <= 80, (args, out)
    code, out, _ = kyso("cert", "list")
    assert enrolled.rsa[:12] in out and enrolled.rsa not in out  # the whole id is in --json


# -- id prefixes -------------------------------------------------------------------------------------------


def test_unique_prefixes_resolve_and_ambiguous_ones_are_refused(kyso, runtime: Runtime, enrolled: Enrolled,  # type: ignore[no-untyped-def]
                                                               unit: str) -> None:
    code, out, err = kyso("cert", "show", enrolled.ec[:8])
    assert code == 0 and enrolled.ec in out, err
    code, _, err = kyso("cert", "show", enrolled.ec[:3])  # too short to be looked up
    one_error_line(err, "not_found")

    # A second credential whose id shares the first 8 characters: the prefix no longer names one.
    with transaction(runtime.sessions) as s:
        original = s.get(Credential, enrolled.ec)
        assert original is not None
        twin_id = enrolled.ec[:8] + "f" * 24 if enrolled.ec[8] != "f" else enrolled.ec[:8] + "e" * 24
        s.add(Credential(id=twin_id, user_id=original.user_id, provider=original.provider,
                         key_algorithm=original.key_algorithm, signature_scheme=original.signature_scheme,
                         status=CredentialStatus.REVOKED, certificate=original.certificate, chain=original.chain,
                         serial_hex="7" + original.serial_hex, subject=original.subject,
                         not_before=original.not_before, not_after=original.not_after))
    try:
        for args in (["cert", "show", enrolled.ec[:8]], ["cert", "revoke", enrolled.ec[:8], "--yes"],
                     ["cert", "renew", enrolled.ec[:8]]):
            code, out, err = kyso(*args)
            assert code == 2, (args, out)
            line = one_error_line(err, "ambiguous_id")
            assert enrolled.ec[:16] in line and twin_id[:16] in line
        code, out, _ = kyso("cert", "show", enrolled.ec[:9])  # one more character: unique again
        assert code == 0 and enrolled.ec in out
    finally:
        with transaction(runtime.sessions) as s:
            s.delete(s.get(Credential, twin_id))

    add_user(runtime, "adm.prefix", "001190000301")
    credential_id = enroll(runtime, "adm.prefix")
    code, out, err = kyso("cert", "revoke", credential_id[:10], "--yes", "--reason", "key_compromise")
    assert code == 0 and f"credential {credential_id} revoked" in out, err

    # Device ids too: one of the user's phones, by prefix.
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with transaction(runtime.sessions) as s:
        code_text, _ = approvals.issue_activation_code(s, runtime.settings, ACTOR, "adm.prefix")
        device, _ = approvals.enroll_device(s, ACTOR, code_text, public, "điện thoại")
        device_id = device.id
    code, out, err = kyso("device", "revoke", "--user", "adm.prefix", "--", device_id[:8])
    assert code == 0 and f"phone {device_id} of adm.prefix revoked" in out, err
    code, _, err = kyso("device", "revoke", "zzzzzzzz", "--user", "adm.prefix")
    one_error_line(err, "not_found")


# -- usage, version, words -------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["cert", "list", "--no-such-option"], ["unit", "add"],
                                  ["unit", "set-mode", "U001", "bogus"], ["nonsense"]])
def test_usage_errors_are_one_line_with_code_usage(kyso, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, out, err = kyso(*args)
    assert code == 2 and not out.strip()
    line = one_error_line(err, "usage")
    assert "--help" in line


def test_version(kyso) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = kyso("--version")
    assert code == 0 and out.startswith("kyso ") and out.split()[1][0].isdigit()


def test_roles_and_modes_are_printed_as_typed(kyso, runtime: Runtime, unit: str) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = kyso("unit", "add", "ADM-USB", "Đơn vị dùng USB token", "--mode", "usb-token")
    assert code == 0 and "(usb-token)" in out and "usb_token" not in out
    code, out, _ = kyso("user", "add", "adm.kt", "--unit", unit, "--name", "Lý Thị Kế Toán", "--id", "001190000302",
                        "--role", "chief-accountant")
    assert code == 0 and out.strip().endswith("as chief-accountant")
    code, out, _ = kyso("user", "list", "--unit", unit)
    assert "chief-accountant" in out and "chief_accountant" not in out
    code, out, _ = kyso("unit", "list")
    assert "usb-token" in out and "usb_token" not in out
    code, out, _ = kyso("unit", "set-mode", "ADM-USB", "remote")
    assert code == 0 and "now signs with remote" in out


# -- revocation asks first ------------------------------------------------------------------------------


def test_revoke_asks_and_without_a_terminal_needs_yes(kyso, runtime: Runtime, unit: str) -> None:  # type: ignore[no-untyped-def]
    add_user(runtime, "adm.revoke", "001190000303")
    credential_id = enroll(runtime, "adm.revoke", "misa")
    code, out, err = kyso("cert", "revoke", credential_id)
    assert code == 2
    assert "--yes" in one_error_line(err, "confirmation_required")
    with transaction(runtime.sessions) as s:
        assert credentials.get_credential(s, credential_id).status is CredentialStatus.ACTIVE
    code, out, err = kyso("cert", "revoke", credential_id, "--yes")
    assert code == 0 and "revoked" in out, err


# -- disabled users --------------------------------------------------------------------------------------


def test_a_disabled_users_signing_is_refused_in_kyso_sign(kyso, runtime: Runtime, unit: str,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    add_user(runtime, "adm.off", "001190000304")
    credential_id = enroll(runtime, "adm.off", "viettel")
    content = tmp_path / "order.xml"
    content.write_bytes("<order>Ủy nhiệm chi</order>".encode())
    code, out, err = kyso("user", "disable", "adm.off", "--reason", "nghỉ việc")
    assert code == 0 and "disabled" in out, err
    assert events(runtime, "user.disable")[-1].details == {"reason": "nghỉ việc"}
    for how in (["--user", "adm.off"], ["--credential", credential_id]):
        code, out, err = kyso("sign", "--unconfirmed", str(content), "--out", str(tmp_path / "o.p7s"), *how,
                              "--format", "cades")
        assert code == 2, out
        one_error_line(err, "user_disabled")
        assert not (tmp_path / "o.p7s").exists()
    code, out, _ = kyso("user", "show", "adm.off")
    assert "disabled" in out
    code, _, err = kyso("user", "disable", "adm.off")
    one_error_line(err, "conflict")

    assert kyso("user", "enable", "adm.off")[0] == 0
    assert events(runtime, "user.enable")[-1].target_id == "adm.off"
    code, out, err = kyso("sign", "--unconfirmed", str(content), "--out", str(tmp_path / "o.p7s"), "--user", "adm.off",
                          "--format", "cades")
    assert code == 0 and (tmp_path / "o.p7s").exists(), err


def test_a_disabled_users_signing_is_refused_on_rest(kyso, runtime: Runtime, unit: str,  # type: ignore[no-untyped-def]
                                                     live_server: str) -> None:
    add_user(runtime, "adm.rest", "001190000305", Role.ACCOUNT_HOLDER)
    credential_id = enroll(runtime, "adm.rest", "vnpt")
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-adm", [unit])
        client, secret = clients.add_client(s, ACTOR, "dvc-adm")
        client_id = client.client_id
    token = KysoClient(live_server, client_id=client_id, client_secret=secret).access_token
    body = {"credential_id": credential_id, "hashes": [
        {"hash": base64.b64encode(hashlib.sha256(b"UNC 01").digest()).decode(), "title": "Ủy nhiệm chi",
         "summary": "1.000.000 VND"}]}
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
        before = api.post("/v1/requests", json=body)
        assert before.status_code == 201, before.text
        assert kyso("user", "disable", "adm.rest")[0] == 0
        refused = api.post("/v1/requests", json=body)
        assert refused.status_code == 403 and refused.json()["code"] == "user_disabled", refused.text
        assert kyso("user", "enable", "adm.rest")[0] == 0
        assert api.post("/v1/requests", json=body).status_code == 201


# -- webhook allowlists ----------------------------------------------------------------------------------


def test_webhook_allowlist_is_listed_and_changed(kyso, runtime: Runtime, unit: str) -> None:  # type: ignore[no-untyped-def]
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-hooks", [unit])
    code, out, err = kyso("rs", "allow", "dvc-hooks", "https://dvc.example.vn:8443/hooks/")
    assert code == 0 and "https://dvc.example.vn:8443/hooks/" in out, err
    assert kyso("rs", "allow", "dvc-hooks", "https://backup.example.vn/kyso")[0] == 0
    code, out, _ = kyso("rs", "show", "dvc-hooks", "--json")
    assert json.loads(out)["webhook_allowlist"] == ["https://dvc.example.vn:8443/hooks/",
                                                    "https://backup.example.vn/kyso"]
    code, out, _ = kyso("rs", "show", "dvc-hooks")
    assert code == 0 and "backup.example.vn" in out

    code, _, err = kyso("rs", "allow", "dvc-hooks", "https://user:pw@evil.example/")  # checked like rs add
    assert code == 2 and err.startswith("error [")
    code, _, err = kyso("rs", "allow", "no-such-rs", "https://dvc.example.vn/")
    one_error_line(err, "not_found")

    code, out, err = kyso("rs", "disallow", "dvc-hooks", "https://dvc.example.vn:8443/hooks/")
    assert code == 0, err
    code, out, _ = kyso("rs", "show", "dvc-hooks", "--json")
    assert json.loads(out)["webhook_allowlist"] == ["https://backup.example.vn/kyso"]
    code, _, err = kyso("rs", "disallow", "dvc-hooks", "https://dvc.example.vn:8443/hooks/")
    one_error_line(err, "not_found")
    audited = [(e.action, e.details.get("entry")) for e in events(runtime, "rs.webhook_allow")
               + events(runtime, "rs.webhook_disallow") if e.target_id == "dvc-hooks"]
    assert ("rs.webhook_allow", "https://backup.example.vn/kyso") in audited
    assert ("rs.webhook_disallow", "https://dvc.example.vn:8443/hooks/") in audited
