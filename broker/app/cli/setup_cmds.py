"""``kyso init``, ``kyso unit ...``, ``kyso user ...``."""

from __future__ import annotations

import enum
from typing import Optional

import typer

from broker import directory
from broker.app.cli.context import state
from broker.app.cli.output import console, table
from broker.audit import cli_actor
from broker.db.engine import transaction
from broker.db.models import Role, SigningMode
from broker.lifecycle import unit_mode
from broker.notify import request_topic
from broker.operations import setup


class ModeChoice(str, enum.Enum):
    remote = "remote"
    usb_token = "usb-token"

    def to_model(self) -> SigningMode:
        return SigningMode.REMOTE if self is ModeChoice.remote else SigningMode.USB_TOKEN


class RoleChoice(str, enum.Enum):
    chief_accountant = "chief-accountant"
    account_holder = "account-holder"
    other = "other"

    def to_model(self) -> Role:
        return Role(self.value.replace("-", "_"))


unit_app = typer.Typer(help="Budget-using units and their signing mode.", no_args_is_help=True)
user_app = typer.Typer(help="Users of a unit (signers).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(unit_app, name="unit")
    app.add_typer(user_app, name="user")


def init(
    ctx: typer.Context,
    sandbox: bool = typer.Option(False, "--sandbox", help="A sandbox: test-only key types, unconfirmed signing."),
) -> None:
    """Create a data dir: SoftHSM token, secrets (0600), database, test PKI."""
    settings = state(ctx).settings()
    generated = setup.init_data_dir(settings, cli_actor(), sandbox=sandbox)
    console.print(f"initialised {settings.data_dir} ({'sandbox' if sandbox else 'standard'})")
    if generated:
        console.print(f"generated {', '.join(generated)} into {settings.secrets_path} (mode 0600)")


@unit_app.command("add")
def unit_add(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="Unit code, e.g. the budget relation code (mã ĐVQHNS)."),
    name: str = typer.Argument(..., help="Unit name."),
    mode: ModeChoice = typer.Option(ModeChoice.remote, "--mode", help="remote or usb-token."),
) -> None:
    """Add a unit."""
    with transaction(state(ctx).runtime().sessions) as session:
        unit = directory.add_unit(session, cli_actor(), code, name, mode.to_model())
        console.print(f"unit {unit.code} added ({unit.signing_mode.value})")


@unit_app.command("list")
def unit_list(ctx: typer.Context) -> None:
    """List units."""
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [(u.code, u.name, u.signing_mode.value, len(u.users)) for u in directory.list_units(session)]
    table(["code", "name", "mode", "users"], rows)


@unit_app.command("set-mode")
def unit_set_mode(
    ctx: typer.Context,
    code: str = typer.Argument(...),
    mode: ModeChoice = typer.Argument(..., help="remote or usb-token."),
) -> None:
    """Switch a unit between remote signing and USB tokens (one at a time)."""
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        unit, ended = unit_mode.set_mode(session, cli_actor(), code, mode.to_model())
        console.print(f"unit {unit.code} now signs with {unit.signing_mode.value}", markup=False, highlight=False)
    if ended:
        runtime.notifier.notify(*(request_topic(request_id) for request_id in ended))
        console.print(f"{len(ended)} open signing request(s) of the unit cancelled (reason unit_usb_token)",
                      markup=False, highlight=False)


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    unit: str = typer.Option(..., "--unit", help="Unit code."),
    name: str = typer.Option(..., "--name", help="Full name, as on the certificate."),
    national_id: str = typer.Option(..., "--id", help="Citizen id (CCCD/CMND) or tax code."),
    role: RoleChoice = typer.Option(RoleChoice.other, "--role"),
    email: Optional[str] = typer.Option(None, "--email"),  # noqa: UP007
) -> None:
    """Add a user to a unit."""
    with transaction(state(ctx).runtime().sessions) as session:
        user = directory.add_user(
            session,
            cli_actor(),
            username=username,
            unit_code=unit,
            full_name=name,
            national_id=national_id,
            role=role.to_model(),
            email=email,
        )
        console.print(f"user {user.username} added to {unit} as {user.role.value}")


@user_app.command("list")
def user_list(ctx: typer.Context, unit: Optional[str] = typer.Option(None, "--unit")) -> None:  # noqa: UP007
    """List users."""
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [
            (u.username, u.full_name, u.unit.code, u.role.value, len(u.credentials))
            for u in directory.list_users(session, unit)
        ]
    table(["username", "name", "unit", "role", "credentials"], rows)
