"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI

from broker.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="kyso", version="0.1.0", description="Remote signing broker")
    app.state.runtime = runtime

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    return app
