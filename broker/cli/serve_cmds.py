"""``kyso serve``: the HTTP API and the approval page."""

from __future__ import annotations

import typer

from broker.cli.context import state
from broker.errors import InvalidInput


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


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
