"""``/providers/{name}/callback``: the providers' calls back about delegated requests (and Viettel's token)."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import origin_of, runtime_of
from broker.credentials import provider_callbacks as service

router = APIRouter(prefix="/providers", include_in_schema=False)


@router.post("/{name}/callback")
async def callback(name: str, request: Request, key: str | None = None,
                   authorization: str | None = Header(default=None)) -> JSONResponse:
    rt = runtime_of(request)
    body = await request.body()
    answer = await run_in_threadpool(service.receive, rt.sessions, rt.settings, rt.ca, name[:32], body=body, key=key,
                                     authorization=authorization, source=origin_of(request))
    return JSONResponse(answer.body, status_code=answer.status)


@router.post("/{name}/token")
async def token(name: str, request: Request, authorization: str | None = Header(default=None)) -> JSONResponse:
    """The client-credentials endpoint a provider (Viettel) calls before calling back."""
    rt = runtime_of(request)
    form = {k: str(v) for k, v in (await request.form()).items()} \
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded") else {}
    answer = await run_in_threadpool(service.issue_token, rt.sessions, rt.settings, name[:32], form=form,
                                     basic=_basic(authorization), source=origin_of(request))
    return JSONResponse(answer.body, status_code=answer.status, headers={"Cache-Control": "no-store"})


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password
