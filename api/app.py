"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api import approval_page, csc, devices, oauth, problems, rest
from broker.db.engine import transaction
from broker.runtime import Runtime
from broker.worker import SigningWorker
from hsm import HsmError


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = SigningWorker(runtime)
        worker.start()
        yield
        worker.stop()

    app = FastAPI(title="kyso", version="0.1.0", lifespan=lifespan,
                  description="Remote signing broker for the State Treasury's DVC: signer confirmation and signing.")
    app.state.runtime = runtime
    problems.install(app)
    app.include_router(devices.router)
    app.include_router(approval_page.router)
    app.include_router(oauth.router)
    app.include_router(rest.router)
    app.include_router(csc.v1_router)
    app.include_router(csc.v2_router)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """The database answers and the HSM token is logged in."""
        checks: dict[str, str] = {}
        try:
            with transaction(runtime.sessions) as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["database"] = f"down: {type(exc).__name__}"
        try:
            runtime.hsm.ping()
            checks["hsm"] = "ok"
        except HsmError as exc:
            checks["hsm"] = f"down: {exc.code}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
