"""The approval app around the approval page: installable (manifest, icons, service worker), live
(a long poll that answers when the pending list changes), what is signed shown (pages, certificate,
relying system), a session that lasts (slid by use, listed, ended), and the signer's history.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import x509
from fastapi import APIRouter, Cookie, Depends, Query, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.approval_page import COOKIE, same_origin
from api.deps import client_origin, runtime
from api.problems import PROBLEM_RESPONSES
from api.schemas import DocumentView, PendingRequest
from api.validations import trust_store
from api.views import pending_view
from broker.approvals import authenticators, history, previews
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import Credential, RelyingSystem, SigningRequest
from broker.lifecycle import signing_requests
from broker.lifecycle.clock import aware, now, seconds_to_first
from broker.lifecycle.payload import RequestPayload
from broker.notify import LIST_RECHECK_SECONDS, user_topic
from broker.runtime import Runtime

STATIC = Path(__file__).resolve().parent / "static"
WORKER = STATIC / "sw.js"
ICON_SIZES = (192, 512)
PRIVATE = {"Cache-Control": "private, no-store"}
"""Documents, pages and decisions: never kept by a browser or proxy cache (the service worker skips them too)."""

router = APIRouter(prefix="/approve", tags=["approval app"], responses=PROBLEM_RESPONSES,
                   dependencies=[Depends(same_origin)])


# -- models ----------------------------------------------------------------------------------------------


class CertificateView(BaseModel):
    """The certificate that will sign."""

    provider: str
    holder: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime


class AppDocument(DocumentView):
    kind: str = Field(description="pades, cades, xades, or hash (a hash the relying system computed).")
    document_sha256: str | None = None
    shown: dict[str, str] = Field(default_factory=dict,
                                  description="XAdES: the signed element, reference id, placement and data preview.")
    pages: bool = Field(False, description="Its pages can be shown (a PDF).")


class AppRequest(PendingRequest):
    relying_system_name: str
    certificate: CertificateView
    created_at: datetime
    documents: list[AppDocument]  # type: ignore[assignment]


class Inbox(BaseModel):
    requests: list[AppRequest]
    version: str = Field(description="Changes when the list does: pass it back as ``version`` to wait for a change.")
    server_time: datetime


class Me(BaseModel):
    username: str
    full_name: str
    session_expires_at: datetime


class PreviewOut(BaseModel):
    pages: int
    rendered: int
    marks: list[dict[str, float]]
    images: list[str]


class HistoryDocument(BaseModel):
    position: int
    title: str
    kind: str
    signed: bool = Field(description="The signed document can be downloaded (and validated).")


class HistoryEntry(BaseModel):
    request_id: str
    relying_system_name: str
    state: str
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime
    failure_reason: str | None
    documents: list[HistoryDocument]


class HistoryOut(BaseModel):
    days: int
    entries: list[HistoryEntry]


class VerdictOut(BaseModel):
    indication: str
    signatures: list[dict[str, str | None]]
    validated_at: str
    note: str | None = None


class SessionOut(BaseModel):
    id: str
    authenticator_id: str | None
    authenticator: str
    created_at: datetime | None
    last_seen_at: datetime | None
    expires_at: datetime
    user_agent: str | None
    current: bool


# -- installable: manifest, icons, service worker --------------------------------------------------------


@router.get("/manifest.webmanifest", include_in_schema=False)
def manifest() -> Response:
    icons = [{"src": f"/approve/icons/icon-{n}.png", "sizes": f"{n}x{n}", "type": "image/png", "purpose": "any"}
             for n in ICON_SIZES]
    icons.append({"src": "/approve/icons/maskable-512.png", "sizes": "512x512", "type": "image/png",
                  "purpose": "maskable"})
    body = {"id": "/approve", "name": "kyso — Duyệt ký số", "short_name": "Duyệt ký số", "lang": "vi",
            "description": "Duyệt yêu cầu ký số bằng vân tay hoặc khuôn mặt / Approve signatures with face or fingerprint",
            "start_url": "/approve", "scope": "/approve", "display": "standalone", "orientation": "portrait",
            "background_color": "#f4f6f9", "theme_color": "#0b5cad", "icons": icons}
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/manifest+json",
                    headers={"Cache-Control": "no-cache"})


@router.get("/sw.js", include_in_schema=False)
def service_worker() -> Response:
    # Scope /approve (the page itself has no trailing slash): wider than the script's folder, so allowed here.
    return Response(WORKER.read_text(encoding="utf-8"), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/approve"})


@router.get("/icons/{name}.png", include_in_schema=False)
def icon(name: str) -> Response:
    sizes = {f"icon-{n}": (n, False) for n in ICON_SIZES} | {"maskable-512": (512, True)}
    if name not in sizes:
        return Response(status_code=404)
    return Response(_icon(*sizes[name]), media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})


@functools.cache
def _icon(size: int, maskable: bool) -> bytes:
    """Drawn here, no asset files: a document with a check mark on the treasury blue."""
    from PIL import Image, ImageDraw

    u = size / 32
    image = Image.new("RGBA", (size, size), (11, 92, 173, 255) if maskable else (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if not maskable:
        draw.rounded_rectangle((0, 0, size - 1, size - 1), radius=int(7 * u), fill=(11, 92, 173, 255))
    inset = 3 * u if maskable else 0  # a maskable icon keeps its drawing inside the safe circle
    scale = (size - 2 * inset) / size

    def at(x: float, y: float) -> tuple[float, float]:
        return inset + x * u * scale, inset + y * u * scale

    draw.rounded_rectangle((*at(8, 5), *at(22, 25)), radius=int(1.5 * u), fill=(255, 255, 255, 255))
    for y in (9, 12, 15):
        draw.line((*at(11, y), *at(19, y)), fill=(11, 92, 173, 255), width=max(1, int(1.2 * u * scale)))
    draw.ellipse((*at(17, 17), *at(27, 27)), fill=(27, 127, 59, 255), outline=(255, 255, 255, 255),
                 width=max(1, int(u * scale)))
    draw.line((*at(19.5, 22), *at(21.5, 24), *at(24.5, 20)), fill=(255, 255, 255, 255),
              width=max(2, int(1.4 * u * scale)), joint="curve")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# -- the session: who, for how long, every one of them ------------------------------------------------------


def _slide(response: Response, rt: Runtime, token: str | None) -> tuple[int, str, str, datetime]:
    """Resume the session (sliding its expiry) and give the cookie the same lifetime."""
    with transaction(rt.sessions) as session:
        user, expires = authenticators.resume_web_session(session, rt.settings, token)
        found = user.id, user.username, user.full_name, expires
    seconds = max(1, int((expires - now()).total_seconds()))
    response.set_cookie(COOKIE, token or "", max_age=seconds, httponly=True, samesite="strict",
                        secure=rt.settings.public_base_url.startswith("https://"), path="/approve")
    return found


@router.get("/api/me", response_model=Me)
def me(response: Response, rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> Me:
    """Who is signed in (401 ``not_signed_in`` otherwise): what the app asks first, at every start."""
    _, username, full_name, expires = _slide(response, rt, kyso_session)
    response.headers.update(PRIVATE)
    return Me(username=username, full_name=full_name, session_expires_at=expires)


@router.get("/api/sessions", response_model=list[SessionOut])
def sessions(rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> list[SessionOut]:
    with transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, kyso_session)
        return [SessionOut(**vars(v)) for v in authenticators.list_web_sessions(session, user.id, kyso_session)]


@router.post("/api/sessions/{session_id}/revoke", status_code=204)
def end_session(session_id: str, response: Response, rt: Runtime = Depends(runtime),
                origin: str | None = Depends(client_origin), kyso_session: str | None = Cookie(default=None)) -> None:
    with transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, kyso_session)
        current = [v for v in authenticators.list_web_sessions(session, user.id, kyso_session) if v.current]
        authenticators.end_web_session(session, Actor("webauthn", user.username, origin), user, session_id)
    if current and current[0].id == session_id:
        response.delete_cookie(COOKIE, path="/approve")


# -- live: the pending list, answered when it changes ---------------------------------------------------------


def _certificate(credential: Credential) -> CertificateView:
    cert = x509.Certificate.load(credential.certificate)
    subject, issuer = cert.subject.native, cert.issuer.native
    return CertificateView(provider=credential.provider,
                           holder=str(subject.get("common_name") or cert.subject.human_friendly),
                           issuer=str(issuer.get("common_name") or cert.issuer.human_friendly),
                           serial=credential.serial_hex, not_before=aware(credential.not_before),
                           not_after=aware(credential.not_after))


def _names(session: Session, requests: list[SigningRequest]) -> dict[str, str]:
    wanted = {r.relying_system for r in requests}
    rows = session.execute(select(RelyingSystem.name, RelyingSystem.display_name)
                           .where(RelyingSystem.name.in_(wanted))).all() if wanted else []
    return {name: display or name for name, display in rows}


def _documents(request: SigningRequest, base: list[DocumentView]) -> list[AppDocument]:
    pending = RequestPayload.of(request).documents
    out = []
    for n, view in enumerate(base):
        document = pending[n] if n < len(pending) else None
        kind = document.kind if document is not None else "hash"
        shown = {k: v for k, v in (document.shown if document else {}).items() if k != "data_digest"}
        out.append(AppDocument(**view.model_dump(), kind=kind, shown=shown,
                               document_sha256=document.document_sha256 if document else None,
                               pages=kind == "pades" and document is not None and document.work_path is not None))
    return out


def app_view(request: SigningRequest, names: dict[str, str]) -> AppRequest:
    base = pending_view(request)
    return AppRequest(**base.model_dump(exclude={"documents"}), documents=_documents(request, base.documents),
                      relying_system_name=names.get(request.relying_system, request.relying_system),
                      certificate=_certificate(request.credential), created_at=aware(request.created_at))


def _version(requests: list[AppRequest]) -> str:
    return hashlib.sha256(" ".join(sorted(r.request_id for r in requests)).encode()).hexdigest()[:16]


@router.get("/api/inbox", response_model=Inbox)
async def inbox(response: Response, wait: float = Query(0, ge=0, le=60, allow_inf_nan=False),
                version: str | None = Query(None, max_length=64), rt: Runtime = Depends(runtime),
                kyso_session: str | None = Cookie(default=None)) -> Inbox:
    """The signer's pending requests, with what they sign; with ``version`` and ``wait``, answered as soon
    as the list differs (a new request, one decided elsewhere or expired), else after ``wait`` seconds."""
    user_id, *_ = await run_in_threadpool(_slide, response, rt, kyso_session)

    def check() -> list[AppRequest]:
        with read_transaction(rt.sessions) as session:
            found = signing_requests.pending_for_user(session, user_id)
            names = _names(session, found)
            return [app_view(r, names) for r in found]

    timeout = min(wait, rt.settings.long_poll_seconds) if version else 0
    # Decided elsewhere: the 1-second re-check sees it (a decision names the request, not the signer).
    # Expired: it leaves the list by itself, and is looked at again then.
    found = await rt.notifier.wait_for_async(
        check, lambda found: _version(found) != version, timeout, recheck=LIST_RECHECK_SECONDS,
        topic=user_topic(user_id), changes_in=lambda found: seconds_to_first(r.expires_at for r in found))
    response.headers.update(PRIVATE)
    return Inbox(requests=found, version=_version(found), server_time=now())


# -- what is signed: the pages ------------------------------------------------------------------------------


def _own_preview(rt: Runtime, token: str | None, request_id: str, position: int) -> previews.Preview:
    with read_transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, token)
        request = history.own_request(session, user.id, request_id)
        return previews.preview(rt.settings, request, position)


@router.get("/api/requests/{request_id}/documents/{position}/preview", response_model=PreviewOut)
def preview(request_id: str, response: Response, position: int = PathParam(ge=0, le=1000),
            rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> PreviewOut:
    """A PDF's pages rendered (the first ``preview_max_pages``), and where its signature field is."""
    found = _own_preview(rt, kyso_session, request_id, position)
    response.headers.update(PRIVATE)
    base = f"/approve/api/requests/{request_id}/documents/{position}/pages"
    return PreviewOut(pages=found.pages, rendered=found.rendered, marks=[vars(m) for m in found.marks],
                      images=[f"{base}/{n}" for n in range(1, found.rendered + 1)])


@router.get("/api/requests/{request_id}/documents/{position}/pages/{number}", include_in_schema=False)
def page_image(request_id: str, position: int = PathParam(ge=0, le=1000), number: int = PathParam(ge=1, le=10_000),
               rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> FileResponse:
    found = _own_preview(rt, kyso_session, request_id, position)
    return FileResponse(found.page_file(number), media_type="image/png", headers=PRIVATE)


# -- history ----------------------------------------------------------------------------------------------------


def _history_entry(request: SigningRequest, names: dict[str, str]) -> HistoryEntry:
    outputs = RequestPayload.of(request).documents
    signed = request.state.value == "signed"
    docs = [HistoryDocument(position=i.position, title=i.title,
                            kind=outputs[n].kind if n < len(outputs) else "hash",
                            signed=signed and n < len(outputs) and outputs[n].output.is_file())
            for n, i in enumerate(request.items)]
    # Pending past its time is expired, though nobody has marked it so yet.
    state = "expired" if signing_requests.overdue(request) else request.state.value
    return HistoryEntry(request_id=request.id, relying_system_name=names.get(request.relying_system, request.relying_system),
                        state=state, created_at=aware(request.created_at),
                        decided_at=aware(request.decided_at) if request.decided_at else None,
                        expires_at=aware(request.expires_at), failure_reason=request.failure_reason, documents=docs)


@router.get("/api/history", response_model=HistoryOut)
def recent(response: Response, rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> HistoryOut:
    """The signer's requests of the last 30 days, newest first, in every state."""
    with read_transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, kyso_session)
        found = history.recent(session, user.id)
        names = _names(session, found)
        entries = [_history_entry(r, names) for r in found]
    response.headers.update(PRIVATE)
    return HistoryOut(days=history.DAYS, entries=entries)


def _own_signed(rt: Runtime, token: str | None, request_id: str, position: int) -> tuple[SigningRequest, Path, str]:
    with read_transaction(rt.sessions) as session:
        user = authenticators.web_session_user(session, token)
        request = history.own_request(session, user.id, request_id)
        path = history.signed_document(request, position)
        title = request.items[position].title if position < len(request.items) else path.name
        session.expunge(request)
        return request, path, title


@router.get("/api/history/{request_id}/documents/{position}", include_in_schema=False)
def signed_document(request_id: str, position: int = PathParam(ge=0, le=1000), rt: Runtime = Depends(runtime),
                    kyso_session: str | None = Cookie(default=None)) -> FileResponse:
    _, path, _ = _own_signed(rt, kyso_session, request_id, position)
    return FileResponse(path, filename=path.name, headers=PRIVATE,
                        media_type="application/pdf" if path.suffix == ".pdf" else "application/octet-stream")


@router.get("/api/history/{request_id}/documents/{position}/verdict", response_model=VerdictOut)
async def verdict(request_id: str, response: Response, position: int = PathParam(ge=0, le=1000),
                  rt: Runtime = Depends(runtime), kyso_session: str | None = Cookie(default=None)) -> VerdictOut:
    """The signed document validated (ETSI indications), once, then from the cache beside it."""

    def validate() -> Any:
        request, _, _ = _own_signed(rt, kyso_session, request_id, position)
        return history.verdict(request, position, trust_store(rt))

    found = await run_in_threadpool(validate)
    response.headers.update(PRIVATE)
    return VerdictOut(**vars(found))


def route_paths() -> set[str]:
    """Every POST of the app (tests check each refuses another origin)."""
    return {r.path for r in router.routes if "POST" in getattr(r, "methods", ())}
