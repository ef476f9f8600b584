"""``kyso-device``: the phone's side, on a terminal (enroll, list, approve, refuse, watch)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from biometrics import Decision
from kyso_device.client import DeviceApiError, DeviceClient, DeviceState, enroll

app = typer.Typer(name="kyso-device", help="Reference approval device for kyso.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
STATE = typer.Option(Path("kyso-device.json"), "--state", help="Device state file (0600: holds the device key).")


def _client(state: Path) -> DeviceClient:
    if not state.is_file():
        print(f"error [no_device]: no device state at {state}; run 'kyso-device enroll' first", file=sys.stderr)
        raise typer.Exit(2)
    return DeviceClient(DeviceState.load(state))


def _show(request: dict) -> None:  # type: ignore[type-arg]
    print(f"request {request['request_id']}  code {request['verification_code']}  from {request['relying_system']}"
          f"  expires {request['expires_at']}")
    for doc in request["documents"]:
        print(f"  [{doc['position']}] {doc['title']} — {doc['summary']}")


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
    print(f"device {device.device_id} enrolled for {device.username}; state in {state}")


@app.command("list")
def list_cmd(state: Path = STATE, wait: float = typer.Option(0, "--wait", help="Long-poll seconds.")) -> None:
    """The user's pending requests."""
    requests = _client(state).pending(wait)
    for r in requests:
        _show(r)
    if not requests:
        print("no pending request")


def _decide(state: Path, request_id: str, code: str | None, decision: Decision) -> None:
    client = _client(state)
    match = [r for r in client.pending() if r["request_id"] == request_id]
    if not match:
        print(f"error [not_found]: no pending request {request_id}", file=sys.stderr)
        raise typer.Exit(2)
    if code is not None and code != match[0]["verification_code"]:
        print("error [code_mismatch]: the verification code differs from the portal's; nothing sent", file=sys.stderr)
        raise typer.Exit(2)
    result = client.decide(match[0], decision)
    client.state.save(state)
    print(f"request {request_id}: {result['state']}")


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
    print("kyso-device watch: approving EVERY request of this user automatically — sandbox use only", flush=True)
    client = _client(state)
    approved = 0
    while count == 0 or approved < count:
        for request in client.pending(wait=25):
            try:
                result = client.decide(request, Decision.APPROVE)
            except DeviceApiError as exc:
                print(f"request {request['request_id']}: {exc}", flush=True)
                continue
            client.state.save(state)
            approved += 1
            print(f"approved {request['request_id']} ({result['state']})", flush=True)


def main() -> None:
    try:
        app()
    except DeviceApiError as exc:
        print(f"error [{exc.code}]: {exc.detail}", file=sys.stderr)
        sys.exit(2)
