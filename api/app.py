"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.telemetry import TelemetryConfig

from api import (
    approval_app,
    approval_page,
    body_limits,
    csc,
    devices,
    oauth,
    openapi_errors,
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

DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
"""Swagger UI's and ReDoc's scripts, from a package: a treasury intranet reaches no CDN."""
# kyso records its own metrics (/metrics) and access log; FastAPI's OpenTelemetry bridge would
# otherwise look up the global providers on every call.
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
OPENAPI_TAGS = [{"name": name} for name in (
    "operations", "approval devices", "approval page", "approval app", "oauth2", "signing API", "validation",
    f"CSC {csc.V1}", f"CSC {csc.V2}")]
LOGO = Path(__file__).resolve().parent / "assets" / "logo.png"
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
"""The documentation pages load only from kyso."""


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

    app = FastAPI(title="kyso", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Remote signing broker for the State Treasury's DVC: signer confirmation and signing.",
                  telemetry=NO_FRAMEWORK_TELEMETRY, openapi_tags=OPENAPI_TAGS)
    app.state.runtime = runtime
    app.add_middleware(body_limits.BodyLimitMiddleware, runtime=runtime)  # inside: its refusals are logged
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)  # outside it: its own error answers get the headers too
    problems.install(app)
    body_limits.install(app)
    # A call is matched against the routes in this order, a cost per route passed: the signing calls
    # first (their paths overlap no other router's). The documentation lists them in OPENAPI_TAGS' order.
    for router in (csc.v2_router, devices.router, rest.router, csc.v1_router, oauth.router, approval_page.router,
                   approval_app.router, validations.router, operations.router, provider_callbacks.router):
        app.include_router(router)
    _serve_docs(app)
    openapi_errors.install(app)  # after every router: it documents their routes
    app.add_middleware(AdminSocketRouting, admin=create_admin_app(runtime),  # before any API middleware
                       socket_path=admin_socket.socket_path(runtime.settings.data_dir))
    return app


def _serve_docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` from kyso's own copy of their scripts; ``/`` says where things are."""
    # ReDoc's bundle shows a logo from Redocly's site in its menu: kyso's own instead, so nothing leaves the intranet.
    redoc_bundle = (DOCS_ASSETS / "redoc.standalone.js").read_bytes().replace(
        b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"/static/logo.png")

    @app.get("/static/docs/redoc.standalone.js", include_in_schema=False)
    def redoc_script() -> Response:
        return Response(redoc_bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="kyso API", swagger_favicon_url="/static/logo.png",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from swagger.io
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url="/openapi.json", title="kyso API", redoc_favicon_url="/static/logo.png",
                              redoc_js_url="/static/docs/redoc.standalone.js", with_google_fonts=False)
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    @app.get("/static/logo.png", include_in_schema=False)
    def logo() -> FileResponse:
        return FileResponse(LOGO, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> JSONResponse:
        base = request.app.state.runtime.settings.public_base_url
        return JSONResponse({
            "service": "kyso", "version": app.version, "description": app.description,
            "links": {"docs": f"{base}/docs", "redoc": f"{base}/redoc", "openapi": f"{base}/openapi.json",
                      "token": f"{base}/oauth2/token", "csc_info": f"{base}/csc/v2/info",
                      "approval_page": f"{base}/approve", "health": f"{base}/healthz"},
            "csc_info_method": "POST",
        })
