"""Dependencies shared by the routers.

The dependencies are coroutines: FastAPI runs a plain function dependency in a pool thread, a trip
per call for nothing. Code that has the request at hand calls :func:`runtime_of` and :func:`origin_of`.
"""

from __future__ import annotations

from fastapi import Header, Request

from broker.approvals import DeviceNotActive
from broker.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


def origin_of(request: Request) -> str | None:
    return request.client.host if request.client else None


async def runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def client_origin(request: Request) -> str | None:
    return origin_of(request)


async def bearer_token(authorization: str | None = Header(default=None)) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise DeviceNotActive("a bearer token is required")
    return authorization[7:].strip()
