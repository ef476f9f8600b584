"""``kyso device activate|list|revoke --user U``: the administrator's side of approval devices."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import qrcode
import typer

from broker import approvals
from broker.audit import cli_actor
from broker.db.engine import read_transaction, transaction
from broker.errors import InvalidInput
from kyso.cli import ids, onboarding_cmds
from kyso.cli.context import state
from kyso.cli.output import JSON_OPTION, console, print_json, table
from kyso.operations import onboarding

device_app = typer.Typer(help="Signers' approval devices (phones and browser authenticators).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")


@device_app.command("activate")
def activate(
    ctx: typer.Context,
    user: Optional[str] = typer.Option(None, "--user"),  # noqa: UP007
    qr: bool = typer.Option(True, "--qr/--no-qr", help="Also print the code as a QR code."),
    from_file: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--from", help="A code for every user of a CSV file (UTF-8, header with a username column); "
                             "users with an active device or an open code are skipped."),
    codes_out: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--codes-out", help="With --from: the CSV file (mode 0600, appended to) the codes are written to; "
                                  "they are never printed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --from: check every row; issue nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --from: print the report as JSON."),
) -> None:
    """Issue a one-time activation code for the user's phone (or a WebAuthn authenticator)."""
    if from_file is not None:
        if user is not None:
            raise InvalidInput("--from reads the users from the file: leave out --user")
        if codes_out is None and not dry_run:
            raise InvalidInput("--from needs --codes-out FILE: codes in bulk are written to a file, never printed")
        _activate_from(ctx, from_file, codes_out, dry_run, as_json)
        return
    if user is None:
        raise InvalidInput("name --user (or --from FILE.csv --codes-out FILE)")
    if codes_out is not None or dry_run:
        raise InvalidInput("--codes-out and --dry-run go with --from")
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        code, uri = approvals.issue_activation_code(session, runtime.settings, cli_actor(), user)
    console.print(f"activation code for {user}: {code}")
    console.print(uri)
    if qr:
        out = io.StringIO()
        image = qrcode.QRCode(border=1)
        image.add_data(uri)
        image.print_ascii(out=out)
        console.print(out.getvalue(), multiline=True)


def _activate_from(ctx: typer.Context, file: Path, codes_out: Path | None, dry_run: bool, as_json: bool) -> None:
    rows = onboarding.read_rows(file, onboarding.ACTIVATION_REQUIRED)
    runtime = state(ctx).runtime()
    codes = onboarding.CodesFile(codes_out) if codes_out is not None and not dry_run else None
    try:
        with onboarding_cmds.progress(len(rows), "activation codes") as advance:
            report = onboarding.issue_activation_codes(onboarding_cmds.batch(runtime, file, dry_run, advance), rows,
                                                       onboarding_cmds.ROW_ERRORS, runtime.settings, codes)
    finally:
        if codes is not None:
            codes.close()
    if codes is not None and report.count(onboarding.DONE):
        console.print(f"{report.count(onboarding.DONE)} code(s) written to {codes.path} (mode 0600): hand each "
                      "signer their own; delete the file once distributed")
    onboarding_cmds.finish(report, "user", dry_run, as_json)


@device_app.command("list")
def list_(ctx: typer.Context, user: str = typer.Option(..., "--user"), as_json: bool = JSON_OPTION) -> None:
    """The user's phones and browser (WebAuthn) authenticators, revoked ones included."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        found = approvals.list_authenticators(session, user)
    if as_json:
        print_json([{"id": a.id, "kind": a.kind, "name": a.name, "status": a.status.value, "counter": a.counter,
                     "created_at": a.created_at, "revoked_at": a.revoked_at} for a in found])
        return
    rows = [(a.id, a.kind, a.name, a.status.value, a.counter, f"{a.created_at:%Y-%m-%d %H:%M}",
             f"{a.revoked_at:%Y-%m-%d %H:%M}" if a.revoked_at else "") for a in found]
    table(["device", "kind", "name", "status", "counter", "enrolled", "revoked"], rows, ids=[0])


@device_app.command("revoke")
def revoke(ctx: typer.Context, device_id: str = typer.Argument(..., help="The id, or a unique prefix of it."),
           user: str = typer.Option(..., "--user")) -> None:
    """Revoke a phone or a WebAuthn authenticator: it approves nothing more; its approval-page sessions end."""
    with transaction(state(ctx).runtime().sessions) as session:
        revoked = approvals.revoke_device(session, cli_actor(), user, ids.device_id(session, user, device_id))
    for item in revoked:
        console.print(f"{item.kind} {item.id} of {user} revoked")
