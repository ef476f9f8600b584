"""Dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Header, Request

from broker.approvals import DeviceNotActive
from broker.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


def client_origin(request: Request) -> str | None:
    return request.client.host if request.client else None


def bearer_token(authorization: str | None = Header(default=None)) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise DeviceNotActive("a bearer token is required")
    return authorization[7:].strip()
