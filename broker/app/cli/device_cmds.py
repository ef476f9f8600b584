"""``kyso device activate|list|revoke --user U``: the administrator's side of approval devices."""

from __future__ import annotations

import io

import qrcode
import typer

from broker import approvals
from broker.app.cli.context import state
from broker.app.cli.output import console, table
from broker.audit import cli_actor
from broker.db.engine import transaction

device_app = typer.Typer(help="Signers' approval devices (phones and browser authenticators).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")


@device_app.command("activate")
def activate(ctx: typer.Context, user: str = typer.Option(..., "--user"),
             qr: bool = typer.Option(True, "--qr/--no-qr", help="Also print the code as a QR code.")) -> None:
    """Issue a one-time activation code for the user's phone (or a WebAuthn authenticator)."""
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


@device_app.command("list")
def list_(ctx: typer.Context, user: str = typer.Option(..., "--user")) -> None:
    """The user's phones and browser (WebAuthn) authenticators, revoked ones included."""
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [(a.id, a.kind, a.name, a.status.value, a.counter, f"{a.created_at:%Y-%m-%d %H:%M}",
                 f"{a.revoked_at:%Y-%m-%d %H:%M}" if a.revoked_at else "")
                for a in approvals.list_authenticators(session, user)]
    table(["device", "kind", "name", "status", "counter", "enrolled", "revoked"], rows)


@device_app.command("revoke")
def revoke(ctx: typer.Context, device_id: str = typer.Argument(...), user: str = typer.Option(..., "--user")) -> None:
    """Revoke a phone or a WebAuthn authenticator: it approves nothing more; its approval-page sessions end."""
    with transaction(state(ctx).runtime().sessions) as session:
        revoked = approvals.revoke_device(session, cli_actor(), user, device_id)
    for item in revoked:
        console.print(f"{item.kind} {item.id} of {user} revoked")
