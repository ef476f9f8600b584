"""``kyso-device``: the phone's side, on a terminal (enroll, list, approve, refuse, watch)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import IO

import typer

from biometrics import Decision
from kyso_device.client import DeviceApiError, DeviceClient, DeviceState, RequestRefused, checked_binding, enroll

app = typer.Typer(name="kyso-device", help="Reference approval device for kyso.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
STATE = typer.Option(Path("kyso-device.json"), "--state", help="Device state file (0600: holds the device key).")
# What a server sends (titles, summaries, error details) is shown as text: controls, ESC, newlines
# and bidi overrides become visible escapes, so it cannot restyle the terminal or fake a line.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {10: "\\n", 13: "\\r", 9: "\\t"}.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def _say(text: str, *, file: IO[str] | None = None, flush: bool = False) -> None:
    print(_UNSAFE.sub(_escape, text), file=file or sys.stdout, flush=flush)


def _client(state: Path) -> DeviceClient:
    if not state.is_file():
        _say(f"error [no_device]: no device state at {state}; run 'kyso-device enroll' first", file=sys.stderr)
        raise typer.Exit(2)
    return DeviceClient(DeviceState.load(state))


_OPTION_LABELS = {"certify": "certifies the document (later changes: only form filling and signing)",
                  "field_name": "signature field", "reason": "reason", "location": "location",
                  "stamp_text": "visible stamp", "reference_id": "XML element signed",
                  "placement": "XML signature placed in"}


def _show(request: dict) -> None:  # type: ignore[type-arg]
    _say(f"request {request['request_id']}  code {request['verification_code']}  from {request['relying_system']}"
         f"  expires {request['expires_at']}")
    for doc in request["documents"]:
        _say(f"  [{doc['position']}] {doc['title']} — {doc['summary']}")
        for name, value in (doc.get("options") or {}).items():
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            _say(f"      {_OPTION_LABELS.get(name, name)}: {shown}")
    try:  # what is shown must be what the binding covers
        checked_binding(request)
    except RequestRefused as exc:
        _say(f"  REFUSED [{exc.code}]: {exc.detail}")


@app.command("enroll")
def enroll_cmd(
    base_url: str = typer.Option(..., "--base-url"),
    code: str = typer.Option(..., "--code", help="The activation code from 'kyso device activate'."),
    name: str = typer.Option("kyso-device", "--name"),
    state: Path = STATE,
) -> None:
    """Register this device's key with a one-time activation code."""
    device = enroll(base_url, code, name)
    device.save(state)
    _say(f"device {device.device_id} enrolled for {device.username}; state in {state}")


@app.command("list")
def list_cmd(state: Path = STATE, wait: float = typer.Option(0, "--wait", help="Long-poll seconds.")) -> None:
    """The user's pending requests."""
    requests = _client(state).pending(wait)
    for r in requests:
        _show(r)
    if not requests:
        _say("no pending request")


def _decide(state: Path, request_id: str, code: str | None, decision: Decision) -> None:
    client = _client(state)
    match = [r for r in client.pending() if r["request_id"] == request_id]
    if not match:
        _say(f"error [not_found]: no pending request {request_id}", file=sys.stderr)
        raise typer.Exit(2)
    if code is not None and code != match[0]["verification_code"]:
        _say("error [code_mismatch]: the verification code differs from the portal's; nothing sent", file=sys.stderr)
        raise typer.Exit(2)
    try:
        result = client.decide(match[0], decision)
    except RequestRefused as exc:
        _say(f"error [{exc.code}]: {exc.detail}", file=sys.stderr)
        raise typer.Exit(2) from exc
    client.state.save(state)
    _say(f"request {request_id}: {result['state']}")


@app.command("approve")
def approve_cmd(request_id: str, state: Path = STATE,
                code: str = typer.Option(None, "--code", help="The code the portal shows; checked before approving.")) -> None:
    """Approve a request (a phone does this after its face or fingerprint check)."""
    _decide(state, request_id, code, Decision.APPROVE)


@app.command("refuse")
def refuse_cmd(request_id: str, state: Path = STATE) -> None:
    """Refuse a request; a refusal is final."""
    _decide(state, request_id, None, Decision.REFUSE)


@app.command("watch")
def watch_cmd(state: Path = STATE, count: int = typer.Option(0, "--count", help="Stop after N approvals (0: never).")) -> None:
    """Approve every request of this device's user as it arrives. For sandboxes only."""
    _say("kyso-device watch: approving EVERY request of this user automatically — sandbox use only", flush=True)
    client = _client(state)
    approved, refused = 0, set[str]()
    while count == 0 or approved < count:
        # Answered when the list changes, not while refused ones stay pending.
        fresh = [r for r in client.pending(wait=25, changed_only=True) if r["request_id"] not in refused]
        for request in fresh:
            try:
                result = client.decide(request, Decision.APPROVE)
            except RequestRefused as exc:  # stays pending until it expires; never signed
                refused.add(request["request_id"])
                _say(f"request {request['request_id']}: refused [{exc.code}]: {exc.detail}", flush=True)
                continue
            except DeviceApiError as exc:
                _say(f"request {request['request_id']}: {exc}", flush=True)
                continue
            client.state.save(state)
            approved += 1
            _say(f"approved {request['request_id']} ({result['state']})", flush=True)


def main() -> None:
    try:
        app()
    except (DeviceApiError, RequestRefused) as exc:
        _say(f"error [{exc.code}]: {exc.detail}", file=sys.stderr)
        sys.exit(2)
