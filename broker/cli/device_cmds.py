"""``kyso device activate|list|revoke --user U``: the administrator's side of approval devices."""

from __future__ import annotations

import io

import qrcode
import typer

from broker.audit import cli_actor
from broker.cli.context import state
from broker.cli.output import console, table
from broker.db.engine import transaction
from broker.services import approvals

device_app = typer.Typer(help="Signers' approval devices (phones).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")


@device_app.command("activate")
def activate(ctx: typer.Context, user: str = typer.Option(..., "--user"),
             qr: bool = typer.Option(True, "--qr/--no-qr", help="Also print the code as a QR code.")) -> None:
    """Issue a one-time activation code for the user's phone (or a WebAuthn authenticator)."""
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        code, uri = approvals.issue_activation_code(session, runtime.settings, cli_actor(), user)
    console.print(f"activation code for {user}: {code}", markup=False, highlight=False)
    console.print(uri, markup=False, highlight=False)
    if qr:
        out = io.StringIO()
        image = qrcode.QRCode(border=1)
        image.add_data(uri)
        image.print_ascii(out=out)
        console.print(out.getvalue(), markup=False, highlight=False)


@device_app.command("list")
def list_(ctx: typer.Context, user: str = typer.Option(..., "--user")) -> None:
    """The user's devices."""
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [(d.id, d.name, d.status.value, d.counter, d.created_at.strftime("%Y-%m-%d %H:%M"))
                for d in approvals.list_devices(session, user)]
    table(["device", "name", "status", "counter", "enrolled"], rows)


@device_app.command("revoke")
def revoke(ctx: typer.Context, device_id: str = typer.Argument(...), user: str = typer.Option(..., "--user")) -> None:
    """Revoke a device: it can no longer approve anything."""
    with transaction(state(ctx).runtime().sessions) as session:
        approvals.revoke_device(session, cli_actor(), user, device_id)
    console.print(f"device {device_id} revoked")
