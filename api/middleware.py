"""Per-request plumbing: the request id, one access log line and the HTTP metrics.

A plain ASGI middleware (not BaseHTTPMiddleware): it sees errors the app did not handle, keeps
streamed responses streaming, and sets the request id in the context that handlers and the
thread pool inherit.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from broker.observability import metrics, request_id

log = logging.getLogger("kyso.http")
_OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_template(scope: Scope) -> str:
    """The matched route's template ("/v1/requests/{request_id}"), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return f"{scope.get('root_path', '')}{path}" if path else metrics.UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_id.accept_or_new(incoming)
        token = request_id.current.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if response_started:
                raise
            # Answer here, with the request id, rather than let the server's bare 500 go out.
            await problem(500, "internal_error", "an internal error occurred; quote the request id")(
                scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            metrics.record_http(scope["method"], route, status, seconds)
            # Probes and scrapes arrive every few seconds: log them only when they fail.
            quiet = route in _OPERATIONS and status < 400
            log.log(logging.DEBUG if quiet else logging.INFO, "request",
                    extra=_access_fields(scope, route, status, seconds))
            request_id.current.reset(token)


def _access_fields(scope: Scope, route: str, status: int, seconds: float) -> dict[str, Any]:
    # The path without its query string: a query may carry a code or a token.
    return {"method": scope["method"], "path": scope["path"], "route": route, "status": status,
            "duration_ms": round(seconds * 1000, 2)}
