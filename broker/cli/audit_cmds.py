"""``kyso audit ...``."""

from __future__ import annotations

import json
from typing import Optional

import typer

from broker import audit
from broker.cli.context import state
from broker.cli.output import console, table
from broker.db.engine import transaction

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1),
    action: Optional[str] = typer.Option(None, "--action"),  # noqa: UP007
) -> None:
    """The newest audit events, oldest first."""
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [
            (
                e.id,
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                e.outcome,
                f"{e.target_type}:{e.target_id}" if e.target_type else "",
                json.dumps(e.details, ensure_ascii=False),
            )
            for e in audit.list_events(session, limit, action)
        ]
    table(["#", "at (UTC)", "actor", "action", "outcome", "target", "details"], rows)


@audit_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check the hash chain of the whole log; exit 1 at the first bad event."""
    with transaction(state(ctx).runtime().sessions) as session:
        bad = audit.verify_chain(session)
    if bad is not None:
        console.print(f"audit chain broken at event {bad.id} ({bad.action})")
        raise typer.Exit(1)
    console.print("audit chain intact")
