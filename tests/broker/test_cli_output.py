"""What the CLI prints is data, never markup or terminal control: hostile values neither crash
``kyso audit list`` nor restyle, move or fake lines on the administrator's terminal."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from broker import approvals, directory
from broker.db.engine import transaction
from broker.db.models import Role
from broker.runtime import Runtime
from kyso.cli.output import fail, safe_text, table
from kyso_device.cli import app as device_app
from tests.conftest import ACTOR, Enrolled
from tests.support import admin

HOSTILE = ["[/x]", "[bold red]SYSTEM COMPROMISED[/bold red]", "\x1b[31mred\x1b[0m\x1b[2J",
           "line\nERROR forged line", "carriage\rreturn", "bidi\u202etxt.exe", "[link=https://evil.example]x[/link]"]


def assert_plain(text: str) -> None:
    """No raw control character but the line ends; no bidi override."""
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text


def test_safe_text_shows_controls_as_escapes() -> None:
    assert safe_text("a\x1b[2Jb\nc\rd\te\u202ef\x00\x9b") == "a\\x1b[2Jb\\nc\\rd\\te\\u202ef\\x00\\x9b"
    assert safe_text("[bold]Nguyễn[/bold] ✓") == "[bold]Nguyễn[/bold] ✓"  # markup stays text; letters stay
    assert safe_text(None) == ""


def test_table_and_messages_print_markup_and_controls_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    table(["value"], [[v] for v in HOSTILE])
    out = capsys.readouterr().out
    assert "[/x]" in out and "[bold red]SYSTEM COMPROMISED[/bold red]" in out and "[link=https://evil.example]" in out
    assert "\\x1b[31mred" in out and "line\\nERROR forged line" in out and "\\u202e" in out
    assert_plain(out)
    assert not any(line.lstrip().startswith("ERROR forged") for line in out.splitlines())

    fail("bad_thing", "user '[/x]\nerror [ok]: all fine\x1b[0m' not found")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error [bad_thing]: ") and "\\n" in err and "\\x1b" in err


def test_audit_list_survives_hostile_client_ids(runtime: Runtime, live_server: str, data_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An unauthenticated caller chooses the client_id written to the audit log."""
    for client_id in HOSTILE:
        answer = httpx.post(f"{live_server}/oauth2/token", data={"grant_type": "client_credentials",
                                                                 "client_id": client_id, "client_secret": "x"})
        assert answer.status_code in (400, 401)
    for _ in range(2):  # it used to crash on every run after
        code, out, err = admin(data_dir, capsys, "audit", "list", "--limit", "20", "--action", "token.issue")
        assert code == 0, err
        assert "[/x]" in out and "[bold red]SYSTEM" in out and "\\x1b[31mred" in out
        assert_plain(out)
        assert not any(line.lstrip().startswith("ERROR forged") for line in out.splitlines())


def test_device_list_shows_hostile_device_names_as_text(runtime: Runtime, enrolled: Enrolled, data_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    username = f"out{uuid.uuid4().hex[:8]}"
    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username=username, unit_code=enrolled.unit, full_name="Out Put",
                           national_id=str(uuid.uuid4().int)[:12], role=Role.OTHER)
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with transaction(runtime.sessions) as s:
        code = approvals.issue_activation_code(s, runtime.settings, ACTOR, username)[0]
        approvals.enroll_device(s, ACTOR, code, public, "[/x] phone\x1b[2J\nfake row")
    code, out, err = admin(data_dir, capsys, "device", "list", "--user", username)
    assert code == 0, err
    assert "[/x] phone\\x1b[2J\\nfake row" in out
    assert_plain(out)


def test_error_messages_quoting_input_are_printed_as_text(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                                          runtime: Runtime) -> None:
    code, out, err = admin(data_dir, capsys, "device", "list", "--user", "[/x]\x1b[2J\nerror [ok]: fine")
    assert code == 2 and err.startswith("error [not_found]: ") and err.count("\n") == 1
    assert "[/x]" in err and "\\x1b" in err
    assert_plain(err)


def test_the_device_cli_prints_server_data_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    """A relying system chooses document titles; the phone's terminal shows them as text."""
    from kyso_device.cli import _show

    _show({"request_id": "r1", "verification_code": "1234", "relying_system": "[/x]\x1b]0;title\x07",
           "expires_at": "soon", "documents": [{"position": 0, "title": "UNC\nrequest r2  code 0000",
                                                "summary": "\u202eexe.pdf"}]})
    out = capsys.readouterr().out
    assert not any(line.startswith("request r2") for line in out.splitlines())  # no forged request line
    assert "UNC\\nrequest r2" in out and "\\x1b]0;title\\x07" in out and "\\u202e" in out
    assert_plain(out)
    assert CliRunner().invoke(device_app, ["list", "--state", "/nonexistent/\x1b[2J"]).exit_code == 2
