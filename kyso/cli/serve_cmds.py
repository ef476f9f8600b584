"""``kyso serve``: the HTTP API and the approval page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from sqlalchemy.engine import make_url

from broker.errors import InvalidInput, NotInitialised
from kyso.cli.context import state
from kyso.cli.output import fail


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("sandbox")(sandbox)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8400, "--port", help="0 picks a free port."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes; more than one needs PostgreSQL."),
) -> None:
    """Serve the API in the foreground until SIGINT or SIGTERM; DATA_DIR/server.json tells where."""
    from kyso import server  # the API is loaded only by the commands that serve it: ~0.6 s off every other command

    settings = state(ctx).settings()
    data_dir = settings.data_dir
    if not settings.config_path.exists():
        raise NotInitialised(f"{data_dir} is not a kyso data dir; run 'kyso init --data-dir {data_dir}'")
    if workers > 1 and make_url(settings.db_url).get_backend_name() != "postgresql":
        # Workers share only the database: SQLite in the data dir is for one process.
        raise InvalidInput(f"{workers} workers need PostgreSQL: set KYSO_DATABASE_URL="
                           "postgresql+psycopg://USER@HOST/DB (the SQLite database serves one worker)")
    settings.user_pin()  # fail here, not in every worker, when no PIN is configured
    if not server.run(settings, host, port, workers):
        fail("worker_start_failed", "a worker could not start; the log above says why")
        raise typer.Exit(1)


def sandbox(
    ctx: typer.Context,
    port: int = typer.Option(0, "--port", help="0 picks a free port."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides the global --data-dir."),  # noqa: UP007
    manual_approval: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--manual-approval", metavar="USER",
        help="A demo user (sbx.ketoan, sbx.chutk) whose requests wait for the approval app at /approve instead of "
             "a simulated phone (repeat)."),
) -> None:
    """Run the broker on loopback with demo data and auto-approving simulated phones (foreground)."""
    from kyso import sandbox as sandbox_module

    sandbox_module.run(data_dir or state(ctx).data_dir, port, manual_approval=manual_approval or [])
