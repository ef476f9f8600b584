"""The mobile approval page and its JSON calls: WebAuthn registration, sign-in, approve, refuse.

The rest of the approval app (manifest, service worker, live list, pages, history, sessions) is in
:mod:`api.approval_app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Cookie, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from api.deps import client_origin, runtime
from api.problems import PROBLEM_RESPONSES
from api.schemas import PendingList, PendingRequest, RequestStatus
from api.views import pending_view, status_view
from biometrics import Decision
from broker.approvals import authenticators
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.lifecycle import signing_requests, waiting
from broker.notify import LIST_RECHECK_SECONDS, user_topic
from broker.runtime import Runtime

PAGE = Path(__file__).resolve().parent / "static" / "approve.html"
COOKIE = "kyso_session"


def same_origin(request: Request, rt: Runtime = Depends(runtime)) -> None:
    """Refuse a state-changing call from a page of another origin (Origin, else Referer): no cross-site forms."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    authenticators.check_origin(rt.settings, request.headers.get("origin"), request.headers.get("referer"))


router = APIRouter(prefix="/approve", tags=["approval page"], responses=PROBLEM_RESPONSES,
                   dependencies=[Depends(same_origin)])


class CodeIn(BaseModel):
    activation_code: str = Field(min_length=4, max_length=64)


class UsernameIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)


class CeremonyOut(BaseModel):
    challenge_id: str
    options: dict[str, Any]


class RegisterIn(BaseModel):
    challenge_id: str
    activation_code: str
    credential: dict[str, Any]
    name: str | None = Field(default=None, max_length=128, description="What the signer calls this authenticator.")


class LoginIn(BaseModel):
    challenge_id: str
    credential: dict[str, Any]


class AssertionIn(BaseModel):
    credential: dict[str, Any]


class SignedIn(BaseModel):
    username: str
    full_name: str


def _signed_in(response: Response, rt: Runtime, user: Any, token: str) -> SignedIn:
    """Set the session cookie (HttpOnly, SameSite=Strict) and describe who signed in."""
    response.set_cookie(COOKIE, token, max_age=rt.settings.web_session_seconds, httponly=True, samesite="strict",
                        secure=rt.settings.public_base_url.startswith("https://"), path="/approve")
    return SignedIn(username=user.username, full_name=user.full_name)


@router.get("", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


@router.post("/api/register/options", response_model=CeremonyOut)
def register_options(body: CodeIn, rt: Runtime = Depends(runtime)) -> CeremonyOut:
    with transaction(rt.sessions) as session:
        challenge_id, options = authenticators.start_registration(session, rt.settings, body.activation_code)
    return CeremonyOut(challenge_id=challenge_id, options=json.loads(options))


@router.post("/api/register/verify", response_model=SignedIn)
def register_verify(body: RegisterIn, request: Request, response: Response, rt: Runtime = Depends(runtime),
                    origin: str | None = Depends(client_origin)) -> SignedIn:
    with transaction(rt.sessions) as session:
        user, token = authenticators.finish_registration(session, rt.settings, Actor("webauthn", "registration", origin),
                                                   body.challenge_id, body.activation_code, json.dumps(body.credential),
                                                   body.name, request.headers.get("user-agent"))
        return _signed_in(response, rt, user, token)


@router.post("/api/login/options", response_model=CeremonyOut)
def login_options(body: UsernameIn, rt: Runtime = Depends(runtime)) -> CeremonyOut:
    with transaction(rt.sessions) as session:
        challenge_id, options = authenticators.start_login(session, rt.settings, body.username)
    return CeremonyOut(challenge_id=challenge_id, options=json.loads(options))


@router.post("/api/login/verify", response_model=SignedIn)
def login_verify(body: LoginIn, request: Request, response: Response, rt: Runtime = Depends(runtime),
                 origin: str | None = Depends(client_origin)) -> SignedIn:
    with transaction(rt.sessions) as session:
        user, token = authenticators.finish_login(session, rt.settings, Actor("webauthn", "login", origin),
                                            body.challenge_id, json.dumps(body.credential), request.headers.get("user-agent"))
        return _signed_in(response, rt, user, token)


@router.post("/api/logout", status_code=204)
def logout(response: Response, rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> None:
    with transaction(rt.sessions) as session:
        authenticators.sign_out(session, kyso_session)
    response.delete_cookie(COOKIE, path="/approve")


@router.get("/api/requests", response_model=PendingList)
async def pending(wait: float = Query(0, ge=0, le=60, allow_inf_nan=False), rt: Runtime = Depends(runtime),
                  kyso_session: str | None = Cookie(default=None)) -> PendingList:
    """The signed-in signer's pending requests; ``wait`` long-polls (in the event loop, holding no thread)."""
    user_id, _ = await run_in_threadpool(authenticators.web_user, rt.sessions, kyso_session)

    def check() -> list[PendingRequest]:
        with read_transaction(rt.sessions) as session:
            return [pending_view(r) for r in signing_requests.awaiting_requests(session.connection(), user_id)]

    found = await rt.notifier.wait_for_async(check, bool, min(max(wait, 0), rt.settings.long_poll_seconds),
                                             recheck=LIST_RECHECK_SECONDS, topic=user_topic(user_id))
    return PendingList(requests=found)


@router.post("/api/requests/{request_id}/options")
def approval_options(request_id: str, rt: Runtime = Depends(runtime),
                     kyso_session: str | None = Cookie(default=None)) -> dict[str, Any]:
    with transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, kyso_session)
        return {"options": json.loads(authenticators.approval_options(session, rt.settings, user, request_id))}


@router.post("/api/requests/{request_id}/approve", response_model=RequestStatus)
def approve(request_id: str, body: AssertionIn, rt: Runtime = Depends(runtime),
            origin: str | None = Depends(client_origin), kyso_session: str | None = Cookie(default=None)) -> RequestStatus:
    user_id, username = authenticators.web_user(rt.sessions, kyso_session)
    request = authenticators.decide_with_webauthn(rt.sessions, rt.settings, origin, user_id, username, request_id,
                                            Decision.APPROVE, json.dumps(body.credential))
    rt.notifier.notify(*waiting.changed_topics(request))
    return status_view(request)


@router.post("/api/requests/{request_id}/refuse", response_model=RequestStatus)
def refuse(request_id: str, rt: Runtime = Depends(runtime), origin: str | None = Depends(client_origin),
           kyso_session: str | None = Cookie(default=None)) -> RequestStatus:
    user_id, username = authenticators.web_user(rt.sessions, kyso_session)
    request = authenticators.decide_with_webauthn(rt.sessions, rt.settings, origin, user_id, username, request_id,
                                            Decision.REFUSE, None)
    rt.notifier.notify(*waiting.changed_topics(request))
    return status_view(request)
