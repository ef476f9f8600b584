"""``kyso serve``: the HTTP API and the approval page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from broker.cli.context import state
from broker.errors import InvalidInput


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("sandbox")(sandbox)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8400, "--port"),
    workers: int = typer.Option(1, "--workers", min=1),
) -> None:
    """Serve the API (one worker; several need PostgreSQL and are not built yet)."""
    import uvicorn

    from api.app import create_app

    runtime = state(ctx).runtime()
    if workers > 1:
        raise InvalidInput("several workers are not supported yet; run one worker")
    runtime.hsm  # log in once, before accepting requests
    uvicorn.run(create_app(runtime), host=host, port=port, log_level="info")


def sandbox(
    ctx: typer.Context,
    port: int = typer.Option(0, "--port", help="0 picks a free port."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Overrides the global --data-dir."),  # noqa: UP007
) -> None:
    """Run the broker on loopback with demo data and auto-approving simulated phones (foreground)."""
    from broker import sandbox as sandbox_module

    sandbox_module.run(data_dir or state(ctx).data_dir, port)
