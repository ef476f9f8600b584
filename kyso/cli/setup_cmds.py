"""``kyso init``, ``kyso unit ...``, ``kyso user ...``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer

from broker import directory
from broker.audit import cli_actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import Role, SigningMode, Unit, User
from broker.lifecycle import unit_mode
from broker.notify import WORK_TOPIC, request_topic
from kyso.cli import onboarding_cmds
from kyso.cli.context import state
from kyso.cli.output import JSON_OPTION, console, print_json, table, word
from kyso.operations import onboarding, setup


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
        console.print(f"unit {unit.code} added ({word(unit.signing_mode)})")


def unit_view(u: Unit) -> dict[str, object]:
    return {"code": u.code, "name": u.name, "mode": word(u.signing_mode), "users": len(u.users),
            "created_at": u.created_at}


@unit_app.command("list")
def unit_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List units."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        views = [unit_view(u) for u in directory.list_units(session)]
    if as_json:
        print_json(views)
        return
    table(["code", "name", "mode", "users"], [(v["code"], v["name"], v["mode"], v["users"]) for v in views])


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
        console.print(f"unit {unit.code} now signs with {word(unit.signing_mode)}", markup=False, highlight=False)
    if ended:
        runtime.notifier.notify(WORK_TOPIC, *(request_topic(request_id) for request_id in ended))  # webhooks
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
        console.print(f"user {user.username} added to {unit} as {word(user.role)}")


def user_view(u: User) -> dict[str, object]:
    return {"username": u.username, "full_name": u.full_name, "unit": u.unit.code, "role": word(u.role),
            "national_id": u.national_id, "email": u.email, "status": "disabled" if u.disabled_at else "active",
            "disabled_at": u.disabled_at, "credentials": [c.id for c in u.credentials], "created_at": u.created_at}


@user_app.command("list")
def user_list(ctx: typer.Context, unit: Optional[str] = typer.Option(None, "--unit"),  # noqa: UP007
              as_json: bool = JSON_OPTION) -> None:
    """List users."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        views = [user_view(u) for u in directory.list_users(session, unit)]
    if as_json:
        print_json(views)
        return
    table(["username", "name", "unit", "role", "status", "credentials"],
          [(v["username"], v["full_name"], v["unit"], v["role"], v["status"], len(v["credentials"]))  # type: ignore[arg-type]
           for v in views])


@user_app.command("show")
def user_show(ctx: typer.Context, username: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Show a user: unit, role, status and credentials."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        view = user_view(directory.get_user(session, username))
    if as_json:
        print_json(view)
        return
    rows = [(k.replace("_", " "), v) for k, v in view.items() if k != "credentials"]
    rows.append(("credentials", " ".join(str(c)[:12] for c in view["credentials"]) or "-"))  # type: ignore[attr-defined]
    table(["field", "value"], [(k, "" if v is None else v) for k, v in rows])


@user_app.command("disable")
def user_disable(
    ctx: typer.Context,
    username: str = typer.Argument(...),
    reason: Optional[str] = typer.Option(None, "--reason", help="Recorded in the audit log."),  # noqa: UP007
) -> None:
    """Disable a user: none of their credentials signs (on any path) until 'kyso user enable'."""
    with transaction(state(ctx).runtime().sessions) as session:
        directory.disable_user(session, cli_actor(), username, reason)
    console.print(f"user {username} disabled: their signing requests are refused (user_disabled)")


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str = typer.Argument(...)) -> None:
    """Enable a disabled user again."""
    with transaction(state(ctx).runtime().sessions) as session:
        directory.enable_user(session, cli_actor(), username)
    console.print(f"user {username} enabled")


@user_app.command("import")
def user_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="CSV, UTF-8, header: username,unit,full_name,national_id[,role][,email]."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check every row; change nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Add many users from a CSV file; users already there are skipped, so a run can be repeated to resume."""
    rows = onboarding.read_rows(file, onboarding.USER_REQUIRED, onboarding.USER_COLUMNS)
    runtime = state(ctx).runtime()
    with onboarding_cmds.progress(len(rows), "users") as advance:
        report = onboarding.import_users(onboarding_cmds.batch(runtime, file, dry_run, advance), rows,
                                         onboarding_cmds.ROW_ERRORS)
    onboarding_cmds.finish(report, "user", dry_run, as_json)
