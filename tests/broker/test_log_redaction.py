"""Log lines: exception text is redacted like messages, a text line cannot be forged, the sandbox logs."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.observability.logs import configure_logging
from tests.support import REPO


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A stream the root logger writes to (json or text, chosen per test), restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _log_failure(token: str, secret: str) -> None:
    log = logging.getLogger("kyso.test")
    try:
        raise RuntimeError(f"upstream said: Authorization: Bearer {token}; retry with {secret}")
    except RuntimeError as exc:
        log.exception("call failed", extra={"cause": exc, "attempts": [exc, 2], "peer": {"said": str(exc)}})


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_exception_text_and_exception_extras_are_redacted(captured: io.StringIO, log_format: str) -> None:
    stream = captured
    configure_logging(log_format, stream=stream)
    token, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)  # what kyso's tokens and secrets look like
    _log_failure(token, secret)
    out = stream.getvalue()
    assert "RuntimeError" in out and "upstream said" in out  # the traceback is kept, only secrets go
    assert token not in out and secret not in out
    assert "[redacted]" in out
    if log_format == "json":
        line = json.loads(out)
        assert "Traceback" in line["exception"] and token not in line["cause"] and token not in str(line["attempts"])


def test_ids_and_hashes_are_not_taken_for_secrets(captured: io.StringIO) -> None:
    stream = captured
    configure_logging("json", stream=stream)
    request_id, digest = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708", "ab" * 32
    logging.getLogger("kyso.test").warning("request %s digest %s client kc_0123456789abcdef", request_id, digest)
    message = json.loads(stream.getvalue())["message"]
    assert request_id in message and digest in message and "kc_0123456789abcdef" in message


def test_a_text_line_cannot_be_forged_or_drive_the_terminal(captured: io.StringIO) -> None:
    stream = captured
    configure_logging("text", stream=stream)
    forged = "2030-01-01 00:00:00,000 INFO    kyso.audit: admin password reset"
    log = logging.getLogger("kyso.test")
    log.warning("login for %s", f"bob\n{forged}\x1b[2J\u202e", extra={"who": f"x\r\n{forged}"})
    try:
        raise ValueError(f"bad name\n{forged}")
    except ValueError:
        log.exception("refused")
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("2030-01-01") for line in lines)
    record_lines = [line for line in lines if not line.startswith("  | ")]
    assert len(record_lines) == 2  # one per record; the traceback lines are marked as its continuation
    assert "\\n2030-01-01" in record_lines[0] and "\\x1b[2J" in record_lines[0] and "\\u202e" in record_lines[0]
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()


def test_the_sandbox_logs_through_the_redacting_handler(tmp_path: Path) -> None:
    """``kyso sandbox`` configures logging (json here): one line per request, with its route and status."""
    data_dir = tmp_path / "sandbox"
    env = {**os.environ, "KYSO_LOG_FORMAT": "json"}
    process = subprocess.Popen([sys.executable, "-m", "kyso.cli", "sandbox", "--data-dir", str(data_dir),
                                "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # the sandbox logs on stdout
    try:
        described = data_dir / "sandbox.json"
        deadline = time.monotonic() + 240
        while not described.exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the sandbox did not become ready"
            time.sleep(0.5)
        base_url = json.loads(described.read_text())["base_url"]
        token = secrets.token_urlsafe(32)
        answer = httpx.get(f"{base_url}/v1/credentials", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        err, _ = process.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "kyso.http" and line.get("status") == 401]
    assert access and access[0]["route"] and access[0]["request_id"]
    assert token not in err
