"""``kyso device ...`` (administrator) and ``kyso-device ...`` (the phone's side) together."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker import credentials
from broker.db.engine import transaction
from broker.db.models import RequestState
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from kyso_device.cli import app as device_app
from tests.conftest import ACTOR, Enrolled
from tests.support import admin


def test_activate_enroll_list_approve_revoke(runtime: Runtime, live_server: str, enrolled: Enrolled, data_dir: Path,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = admin(data_dir, capsys, "device", "activate", "--user", "lan")
    assert code == 0
    activation = re.search(r"activation code for lan: (\S+)", out)
    assert activation and "kyso://activate?base_url=" in out
    assert "█" in out or "▀" in out  # the QR code

    state = tmp_path / "phone.json"
    cli = CliRunner()
    result = cli.invoke(device_app, ["enroll", "--base-url", live_server, "--code", activation.group(1),
                                     "--state", str(state)])
    assert result.exit_code == 0, result.output
    assert oct(state.stat().st_mode & 0o777) == "0o600"

    doc = signing_requests.DocumentToSign(hashlib.sha256(str(time.time()).encode()).digest(), "UNC-CLI", "125.000.000 VND")
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.rsa)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential, [doc], relying_system="dvc",
                                  provider=runtime.ca(credential.provider))
        request_id, verification = request.id, request.verification_code
    listed = cli.invoke(device_app, ["list", "--state", str(state)])
    assert request_id in listed.output and verification in listed.output and "UNC-CLI" in listed.output
    wrong = "0000" if verification != "0000" else "1111"
    mismatch = cli.invoke(device_app, ["approve", request_id, "--code", wrong, "--state", str(state)])
    assert mismatch.exit_code == 2
    approved = cli.invoke(device_app, ["approve", request_id, "--code", verification, "--state", str(state)])
    assert approved.exit_code == 0 and "approved" in approved.output
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.APPROVED

    code, out, _ = admin(data_dir, capsys, "device", "list", "--user", "lan")
    assert code == 0 and "active" in out
    device_id = __import__("json").loads(state.read_text())["device_id"]
    assert admin(data_dir, capsys, "device", "revoke", "--user", "lan", "--", device_id)[0] == 0
    code, _, err = admin(data_dir, capsys, "device", "revoke", "--user", "lan", "--", device_id)
    assert code == 2 and err.startswith("error [device_not_active]")
    code, _, err = admin(data_dir, capsys, "device", "activate", "--user", "ghost")
    assert code == 2 and err.startswith("error [not_found]")
    missing = cli.invoke(device_app, ["list", "--state", str(tmp_path / "none.json")])
    assert missing.exit_code == 2
