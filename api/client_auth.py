"""Bearer-token authentication of relying systems' clients."""

from __future__ import annotations

from fastapi import Depends, Header

from api.deps import runtime
from broker.clients import ClientContext, authenticate
from broker.db.engine import read_connection
from broker.runtime import Runtime


def client_context(authorization: str | None = Header(default=None), rt: Runtime = Depends(runtime)) -> ClientContext:
    token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
    with read_connection(rt.sessions) as connection:
        return authenticate(connection, token)
