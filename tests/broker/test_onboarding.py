"""Onboarding many at once: ``kyso user import``, ``kyso cert enroll --from``, ``kyso device activate --from``.

Each run reports every row (done, skipped, refused with the reason), audits it, and can be run
again: what is done is skipped, so an interrupted or partly refused import resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broker import directory
from broker.db.engine import transaction
from broker.db.models import AuditEvent, Credential, SigningMode, User
from broker.runtime import Runtime
from tests.conftest import ACTOR
from tests.support import REPO

UNIT = "ONB1"
KILLED_ROWS = 1000
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng"]
GIVEN = ["Thị Lan", "Văn Hùng", "Thị Hoa", "Đức Anh", "Thu Hằng", "Quốc Bảo", "Ngọc Ánh", "Minh Tuấn"]


@pytest.fixture(scope="module")
def unit(runtime: Runtime) -> str:
    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, UNIT, "Trường Trung học cơ sở Chu Văn An", SigningMode.REMOTE)
    return UNIT


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def user_rows(prefix: str, n: int) -> list[list[str]]:
    roles = ["chief-accountant", "account-holder", "other", ""]
    return [[f"{prefix}.{i:04d}", UNIT, f"{FAMILY[i % len(FAMILY)]} {GIVEN[i % len(GIVEN)]}", f"0011900{i:05d}",
             roles[i % len(roles)], f"{prefix}.{i}@truong.edu.vn" if i % 2 else ""] for i in range(n)]


def count_users(runtime: Runtime, prefix: str) -> int:
    with transaction(runtime.sessions) as s:
        return s.scalar(select(func.count()).select_from(User).where(User.username.startswith(prefix + "."))) or 0


def import_events(runtime: Runtime, action: str, outcome: str) -> int:
    with transaction(runtime.sessions) as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.outcome == outcome)) or 0


def test_user_import_of_hundreds_resumes_after_a_refused_row(kyso, runtime: Runtime, unit: str,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    rows = user_rows("onb", 300)
    rows[170][3] = "CCCD?"  # fails validation: everything before and after it is done
    path = write_csv(tmp_path / "nguoi-dung.csv", ["username", "unit", "full_name", "national_id", "role", "email"],
                     rows, bom=True)

    code, out, err = kyso("user", "import", str(path), "--dry-run", "--json")
    report = json.loads(out)
    assert code == 1 and report["dry_run"] and report["counts"]["would do"] == 299, err
    assert count_users(runtime, "onb") == 0 and import_events(runtime, "import.user", "ok") == 0

    code, out, err = kyso("user", "import", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["counts"] == {"done": 299, "would do": 0, "skipped": 0, "refused": 1}
    [refused] = [r for r in report["rows"] if r["outcome"] == "refused"]
    assert refused["line"] == 172 and refused["key"] == "onb.0170" and refused["code"] == "invalid_input"
    assert count_users(runtime, "onb") == 299
    assert import_events(runtime, "import.user", "ok") == 299 and import_events(runtime, "import.user", "refused") == 1

    rows[170][3] = "001190000170"  # fixed: the second run does only that row
    write_csv(path, ["username", "unit", "full_name", "national_id", "role", "email"], rows)
    code, out, err = kyso("user", "import", str(path))
    assert code == 0, out + err
    assert "1 done, 299 skipped, 0 refused" in out
    assert count_users(runtime, "onb") == 300
    with transaction(runtime.sessions) as s:
        user = directory.get_user(s, "onb.0001")
        assert (user.full_name, user.role.value, user.email) == ("Trần Văn Hùng", "account_holder",
                                                                  "onb.1@truong.edu.vn")
    assert import_events(runtime, "import.user", "skipped") == 299


def test_user_import_resumes_after_the_process_is_killed(tmp_path: Path) -> None:
    """A data dir of its own (SoftHSM serves one token store per process): the import is killed part
    way, run again, and every row is there once; the database is intact."""
    data_dir = tmp_path / "data"
    for args in (["init", "--sandbox"], ["unit", "add", UNIT, "Trường Trung học cơ sở Chu Văn An"]):
        done = subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), *args],
                              cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
    path = write_csv(tmp_path / "users.csv", ["username", "unit", "full_name", "national_id"],
                     [r[:4] for r in user_rows("kill", KILLED_ROWS)])
    command = [sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), "user", "import", str(path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while users_in(data_dir, "kill") < 20:  # killed part way through the file
        assert process.poll() is None and time.monotonic() < deadline, "the import ended before it was killed"
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    done_before = users_in(data_dir, "kill")
    assert 20 <= done_before < KILLED_ROWS

    again = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(again.stdout)
    assert again.returncode == 0, again.stderr
    assert report["counts"]["refused"] == 0
    assert report["counts"]["done"] + report["counts"]["skipped"] == KILLED_ROWS
    assert report["counts"]["skipped"] >= done_before
    assert users_in(data_dir, "kill") == KILLED_ROWS
    with sqlite3.connect(f"file:{data_dir / 'kyso.db'}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def users_in(data_dir: Path, prefix: str) -> int:
    """Read-only, from outside kyso: the test takes no lock the import would wait for."""
    with sqlite3.connect(f"file:{data_dir / 'kyso.db'}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM users WHERE username LIKE ?", (prefix + ".%",)).fetchone()[0])


def test_a_bad_file_is_refused_whole(kyso, unit: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    no_id = write_csv(tmp_path / "a.csv", ["username", "unit", "full_name"], [["x", UNIT, "X"]])
    code, _, err = kyso("user", "import", str(no_id))
    assert code == 2 and err.startswith("error [invalid_input]:") and "national_id" in err
    latin1 = tmp_path / "b.csv"
    latin1.write_bytes("username,unit,full_name,national_id\nx,ONB1,Nguyễn,001190000999\n".encode("utf-16"))
    code, _, err = kyso("user", "import", str(latin1))
    assert code == 2 and "UTF-8" in err


def test_cert_enroll_from_a_file_skips_what_is_enrolled(kyso, runtime: Runtime, unit: str,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    users = write_csv(tmp_path / "users.csv", ["username", "unit", "full_name", "national_id"],
                      [r[:4] for r in user_rows("crt", 3)])
    assert kyso("user", "import", str(users))[0] == 0
    path = write_csv(tmp_path / "certs.csv", ["username", "ca", "key"],
                     [["crt.0000", "vnpt", "ec-p256"], ["crt.0001", "viettel", "ec-p256"],
                      ["crt.0002", "acme", "ec-p256"], ["nobody", "misa", "ec-p256"]])
    code, out, _ = kyso("cert", "enroll", "--from", str(path), "--dry-run", "--json")
    report = json.loads(out)
    assert code == 1 and report["counts"]["would do"] == 2 and report["counts"]["refused"] == 2

    code, out, _ = kyso("cert", "enroll", "--from", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["counts"]["done"] == 2
    assert {r["key"]: r["code"] for r in report["rows"] if r["outcome"] == "refused"} == {
        "crt.0002/acme": "invalid_input", "nobody/misa": "not_found"}
    with transaction(runtime.sessions) as s:
        made = list(s.scalars(select(Credential.id).join(User).where(User.username.in_(["crt.0000", "crt.0001"]))))
    assert len(made) == 2

    code, out, _ = kyso("cert", "enroll", "--from", str(path), "--json")
    report = json.loads(out)
    assert report["counts"]["done"] == 0 and report["counts"]["skipped"] == 2
    assert import_events(runtime, "import.credential", "ok") >= 2


def test_activation_codes_go_to_a_0600_file_and_never_to_the_terminal(kyso, runtime: Runtime, unit: str,  # type: ignore[no-untyped-def]
                                                                       tmp_path: Path) -> None:
    users = write_csv(tmp_path / "users.csv", ["username", "unit", "full_name", "national_id"],
                      [r[:4] for r in user_rows("act", 5)])
    assert kyso("user", "import", str(users))[0] == 0
    codes = tmp_path / "ma-kich-hoat.csv"
    code, _, err = kyso("device", "activate", "--from", str(users))
    assert code == 2 and "--codes-out" in err

    code, out, err = kyso("device", "activate", "--from", str(users), "--codes-out", str(codes), "--dry-run")
    assert code == 0 and not codes.exists(), out + err

    code, out, err = kyso("device", "activate", "--from", str(users), "--codes-out", str(codes))
    assert code == 0, out + err
    assert stat.S_IMODE(os.stat(codes).st_mode) == 0o600
    with codes.open(encoding="utf-8") as fh:
        written = list(csv.DictReader(fh))
    assert [r["username"] for r in written] == [f"act.{i:04d}" for i in range(5)]
    assert written[0]["full_name"] == "Nguyễn Thị Lan" and written[0]["activation_uri"].startswith("kyso://activate?")
    for row in written:
        assert row["activation_code"] not in out + err
        assert row["activation_uri"] not in out + err

    code, out, err = kyso("device", "activate", "--from", str(users), "--codes-out", str(codes), "--json")
    report = json.loads(out)
    assert code == 0 and report["counts"]["skipped"] == 5  # the codes out are still open
    with codes.open(encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    assert import_events(runtime, "import.activation", "ok") >= 5
