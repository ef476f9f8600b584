"""``kyso rs ...`` and ``kyso client ...``: relying systems and their OAuth2 clients."""

from __future__ import annotations

from typing import Optional

import typer

from broker import clients
from broker.audit import cli_actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import OAuthClient, RelyingSystem
from kyso.cli.context import state
from kyso.cli.output import JSON_OPTION, console, print_json, table

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
    display_name: Optional[str] = typer.Option(  # noqa: UP007
        None, "--display-name", help='What signers see in the approval app, e.g. "Cổng DVC Kho bạc".'),
) -> None:
    """Add a relying system serving the given units."""
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        rs = clients.add_relying_system(session, cli_actor(), name, unit, webhook_allow or [],
                                        allow_private=runtime.settings.webhook_allow_private,
                                        display_name=display_name)
        secret = rs.webhook_secret
    console.print(f"relying system {name} added ({', '.join(unit)})")
    console.print(f"webhook signing secret: {secret}", markup=False)


def rs_view(r: RelyingSystem) -> dict[str, object]:
    return {"name": r.name, "display_name": getattr(r, "display_name", None),
            "units": [u.code for u in r.units], "webhook_allowlist": list(r.webhook_allowlist or []),
            "created_at": r.created_at}


@rs_app.command("list")
def rs_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List relying systems."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        views = [rs_view(r) for r in clients.list_relying_systems(session)]
    if as_json:
        print_json(views)
        return
    table(["relying system", "units", "webhook allowlist"],
          [(v["name"], ", ".join(v["units"]), ", ".join(v["webhook_allowlist"])) for v in views])  # type: ignore[arg-type]


@rs_app.command("show")
def rs_show(ctx: typer.Context, name: str = typer.Argument(...), as_json: bool = JSON_OPTION) -> None:
    """Show a relying system: its units, webhook allowlist and clients."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        rs = clients.get_relying_system(session, name)
        view = rs_view(rs)
        client_ids = [c.client_id for c in clients.list_clients(session) if c.relying_system_id == rs.id]
    view["clients"] = client_ids
    if as_json:
        print_json(view)
        return
    rows: list[tuple[str, object]] = [("name", view["name"])]
    if view["display_name"]:
        rows.append(("display name", view["display_name"]))
    rows.append(("units", ", ".join(view["units"]) or "-"))  # type: ignore[arg-type]
    rows += [("webhook allowed", entry) for entry in view["webhook_allowlist"]] or [("webhook allowed", "-")]  # type: ignore[attr-defined]
    rows.append(("clients", " ".join(client_ids) or "-"))
    table(["field", "value"], rows)


@rs_app.command("allow")
def rs_allow(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    url: str = typer.Argument(..., help="https://host[:port][/path]: a webhook URL matches by scheme, host, port "
                                        "and path prefix."),
) -> None:
    """Allow a webhook target for a relying system (checked like 'rs add --webhook-allow')."""
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        updated = clients.allow_webhook_target(session, cli_actor(), name, url,
                                               allow_private=runtime.settings.webhook_allow_private)
    console.print(f"webhook allowlist of {name}: {', '.join(updated)}")


@rs_app.command("disallow")
def rs_disallow(ctx: typer.Context, name: str = typer.Argument(...), url: str = typer.Argument(...)) -> None:
    """Remove a webhook target from a relying system's allowlist; webhooks to it are no longer sent."""
    with transaction(state(ctx).runtime().sessions) as session:
        updated = clients.disallow_webhook_target(session, cli_actor(), name, url)
    console.print(f"webhook allowlist of {name}: {', '.join(updated) or '(empty)'}")


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


def client_view(c: OAuthClient) -> dict[str, object]:
    return {"client_id": c.client_id, "relying_system": c.relying_system.name, "scopes": list(c.scopes),
            "status": c.status.value, "created_at": c.created_at}


@client_app.command("list")
def client_list(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List OAuth2 clients."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        views = [client_view(c) for c in clients.list_clients(session)]
    if as_json:
        print_json(views)
        return
    table(["client", "relying system", "scopes", "status"],
          [(v["client_id"], v["relying_system"], " ".join(v["scopes"]), v["status"]) for v in views])  # type: ignore[arg-type]


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
