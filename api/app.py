"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from api import (
    approval_page,
    body_limits,
    csc,
    devices,
    oauth,
    operations,
    problems,
    provider_callbacks,
    rest,
    validations,
)
from api.admin import AdminSocketRouting, create_admin_app
from api.middleware import RequestContextMiddleware
from api.security_headers import SecurityHeadersMiddleware
from broker import admin_socket
from broker.audit.checkpoint import checkpoint_on_shutdown
from broker.lifecycle.worker import SigningWorker
from broker.runtime import Runtime


def create_app(runtime: Runtime, *, close_runtime: bool = False) -> FastAPI:
    """``close_runtime``: the app owns the runtime (a ``kyso serve`` worker) and closes it on shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = runtime.settings.api_threads
        worker = SigningWorker(runtime)
        worker.start()
        yield
        worker.stop()
        # A signed checkpoint at every clean stop, so that a cut tail shows against the newest anchor.
        await asyncio.to_thread(checkpoint_on_shutdown, runtime)
        if close_runtime:
            runtime.close()

    app = FastAPI(title="kyso", version="0.1.0", lifespan=lifespan,
                  description="Remote signing broker for the State Treasury's DVC: signer confirmation and signing.")
    app.state.runtime = runtime
    app.add_middleware(body_limits.BodyLimitMiddleware, runtime=runtime)  # inside: its refusals are logged
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)  # outside it: its own error answers get the headers too
    problems.install(app)
    body_limits.install(app)
    app.include_router(operations.router)
    app.include_router(devices.router)
    app.include_router(approval_page.router)
    app.include_router(oauth.router)
    app.include_router(rest.router)
    app.include_router(validations.router)
    app.include_router(csc.v1_router)
    app.include_router(csc.v2_router)
    app.include_router(provider_callbacks.router)
    app.add_middleware(AdminSocketRouting, admin=create_admin_app(runtime),  # before any API middleware
                       socket_path=admin_socket.socket_path(runtime.settings.data_dir))
    return app
