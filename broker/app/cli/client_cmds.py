"""``kyso rs ...`` and ``kyso client ...``: relying systems and their OAuth2 clients."""

from __future__ import annotations

from typing import Optional

import typer

from broker import clients
from broker.app.cli.context import state
from broker.app.cli.output import console, table
from broker.audit import cli_actor
from broker.db.engine import transaction

rs_app = typer.Typer(help="Relying systems (e.g. the DVC portal) and the units they serve.", no_args_is_help=True)
client_app = typer.Typer(help="OAuth2 clients of relying systems (client credentials).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rs_app, name="rs")
    app.add_typer(client_app, name="client")


@rs_app.command("add")
def rs_add(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    unit: list[str] = typer.Option(..., "--unit", help="A unit code this system serves (repeat)."),
    webhook_allow: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--webhook-allow",
        help="Allowed webhook target, https://host[:port][/path] (repeat); a URL matches by scheme, host, port "
             "and path prefix."),
) -> None:
    """Add a relying system serving the given units."""
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        rs = clients.add_relying_system(session, cli_actor(), name, unit, webhook_allow or [],
                                        allow_private=runtime.settings.webhook_allow_private)
        secret = rs.webhook_secret
    console.print(f"relying system {name} added ({', '.join(unit)})")
    console.print(f"webhook signing secret: {secret}", markup=False)


@rs_app.command("list")
def rs_list(ctx: typer.Context) -> None:
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [(r.name, ", ".join(u.code for u in r.units), ", ".join(r.webhook_allowlist))
                for r in clients.list_relying_systems(session)]
    table(["relying system", "units", "webhook allowlist"], rows)


@client_app.command("add")
def client_add(
    ctx: typer.Context,
    rs: str = typer.Option(..., "--rs", help="The relying system."),
    scope: Optional[list[str]] = typer.Option(None, "--scope", help="sign and/or read (default: both)."),  # noqa: UP007
) -> None:
    """Create a client; its secret is shown once."""
    with transaction(state(ctx).runtime().sessions) as session:
        client, secret = clients.add_client(session, cli_actor(), rs, scope)
        client_id = client.client_id
    console.print(f"client_id:     {client_id}", markup=False)
    console.print(f"client_secret: {secret}", markup=False)
    console.print("store the secret now: kyso keeps only its hash", markup=False)


@client_app.command("list")
def client_list(ctx: typer.Context) -> None:
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [(c.client_id, c.relying_system.name, " ".join(c.scopes), c.status.value)
                for c in clients.list_clients(session)]
    table(["client", "relying system", "scopes", "status"], rows)


@client_app.command("rotate")
def client_rotate(ctx: typer.Context, client_id: str = typer.Argument(...)) -> None:
    """A new secret; the old one and its tokens stop working."""
    with transaction(state(ctx).runtime().sessions) as session:
        secret = clients.rotate_secret(session, cli_actor(), client_id)
    console.print(f"client_secret: {secret}", markup=False)


@client_app.command("disable")
def client_disable(ctx: typer.Context, client_id: str = typer.Argument(...)) -> None:
    with transaction(state(ctx).runtime().sessions) as session:
        clients.disable_client(session, cli_actor(), client_id)
    console.print(f"client {client_id} disabled")
