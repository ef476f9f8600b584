"""Bearer-token authentication of relying systems' clients."""

from __future__ import annotations

from fastapi import Header, Request
from fastapi.concurrency import run_in_threadpool

from api.body_limits import remember_client, remembered_client
from api.deps import runtime_of
from broker.clients import ClientContext, authenticate
from broker.db.engine import read_connection
from broker.runtime import Runtime


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None."""
    return authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None


async def client_context(request: Request, authorization: str | None = Header(default=None)) -> ClientContext:
    """The caller: authenticated once per call. A call with a body was authenticated before its body
    was read (the same token, the same caller); otherwise one query, in a pool thread."""
    token = bearer(authorization)
    ctx = remembered_client(request.scope, token)
    if ctx is None:
        ctx = await run_in_threadpool(_authenticate, runtime_of(request), token)
        remember_client(request.scope, token, ctx)
    return ctx


def _authenticate(rt: Runtime, token: str | None) -> ClientContext:
    with read_connection(rt.sessions) as connection:
        return authenticate(connection, token)
