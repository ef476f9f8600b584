"""The native REST API for relying systems: credentials, documents, signing requests, results."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from api.client_auth import client_context
from api.deps import client_origin, runtime
from api.problems import PROBLEM_RESPONSES
from broker import clients
from broker.clients import ClientContext
from broker.db.engine import read_connection, read_session, read_transaction, transaction
from broker.db.models import RequestState, SigningRequest
from broker.errors import DocumentGone, InvalidInput
from broker.lifecycle import signing_requests, submissions, uploads, webhooks
from broker.lifecycle.clock import seconds_until
from broker.lifecycle.payload import RequestPayload
from broker.notify import WORK_TOPIC, request_topic, user_topic
from broker.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["signing API"], responses=PROBLEM_RESPONSES)


class CredentialOut(BaseModel):
    credential_id: str
    user_id: str
    provider: str
    key_algo: str
    signature_scheme: str
    status: str
    mode: Literal["hosted", "delegated"] = Field(
        description="hosted: key in kyso's HSM, confirmed on the signer's kyso phone; delegated: key at the "
                    "provider, confirmed in the provider's app")
    certificates: list[str] = Field(description="base64 DER: the signer's certificate, then the chain.")


class HashIn(BaseModel):
    hash: str = Field(description="base64 digest")
    title: str = Field(min_length=1, max_length=255)
    summary: str = Field(default="", max_length=2000)


class DocumentIn(BaseModel):
    title: str = Field(min_length=1, max_length=255)
    summary: str = Field(default="", max_length=2000)
    content: str | None = Field(default=None, description="base64 bytes; or upload first and give document_id")
    document_id: str | None = None
    enveloping: bool = False
    field: str = Field(default="Signature1", max_length=64, description="PAdES signature field (made if missing)")
    certify: bool = False
    reason: str | None = Field(default=None, max_length=255)
    location: str | None = Field(default=None, max_length=255)
    stamp: str | None = Field(default=None, max_length=500, description="Visible text; %(signer)s and %(ts)s filled")
    reference_id: str | None = Field(default=None, max_length=128,
                                     description="XAdES: the Id of the element signed (URI=\"#id\")")
    placement: str | None = Field(default=None, max_length=255,
                                  description="XAdES: where the signature goes, e.g. /Hoso/CKy_Dvi, //Cky, DSCKS/NBan")
    page: int | None = Field(default=None, ge=1, le=100_000,
                             description="PAdES, a field the document lacks: its page (1 is the first)")
    box: list[float] | None = Field(default=None, min_length=4, max_length=4,
                                    description="PAdES, a field the document lacks: x1, y1, x2, y2 in points, "
                                                "origin bottom left (a stamp on a new field needs one)")


class RequestIn(BaseModel):
    credential_id: str
    format: Literal["raw", "cades", "pades", "xades"] = "raw"
    hash_algorithm: str = "sha256"
    hashes: list[HashIn] = Field(default_factory=list)
    documents: list[DocumentIn] = Field(default_factory=list)
    webhook_url: str | None = None
    level: Literal["B-B", "B-T", "B-LT", "B-LTA"] = Field(
        default="B-B", description="Baseline level: raw is B-B only; CAdES and XAdES up to B-LT; PAdES up to B-LTA")
    accept_lower_level: bool = Field(
        default=False, description="If the TSA or revocation data is unavailable, deliver the level reached "
                                   "instead of failing (the response's level says which)")
    after_request_id: str | None = Field(
        default=None, description="Sign the signed documents of this earlier request, in order (second signer)")


class RequestOut(BaseModel):
    request_id: str
    state: str
    format: str
    verification_code: str = Field(description="Show it beside 'waiting for approval': the phone shows the same.")
    expires_at: datetime
    signatures: list[str] | None = Field(default=None, description="raw format, once signed: base64, in order")
    documents: list[str] | None = Field(default=None, description="URLs of the signed documents, once signed")
    failure_reason: str | None = None
    level: str | None = Field(default=None, description="The baseline level the signed documents reached")


class DocumentOut(BaseModel):
    document_id: str
    size: int
    sha256: str


def _view(request: SigningRequest, base: str) -> RequestOut:
    signed = request.state is RequestState.SIGNED
    payload = RequestPayload.of(request)
    count = len(payload.documents)
    return RequestOut(
        request_id=request.id, state=request.state.value, format=request.format,
        verification_code=request.verification_code, expires_at=signing_requests.aware(request.expires_at),
        signatures=[base64.b64encode(i.signature).decode() for i in request.items if i.signature]
        if signed and request.format == "raw" else None,
        documents=[f"{base}/v1/requests/{request.id}/documents/{n}" for n in range(count)]
        if signed and request.format != "raw" else None,
        failure_reason=request.failure_reason,
        level=payload.achieved_level.value if signed and payload.achieved_level else None,
    )


@router.get("/credentials", response_model=list[CredentialOut])
def list_credentials(user: str | None = None, ctx: ClientContext = Depends(client_context),
                     rt: Runtime = Depends(runtime)) -> list[CredentialOut]:
    """Credentials of the signers this relying system serves."""
    with read_transaction(rt.sessions) as session:
        out = []
        for c in clients.visible_credentials(session, ctx, user):
            chain = [c.certificate, *(base64.b64decode(x) for x in c.chain)]
            out.append(CredentialOut(credential_id=c.id, user_id=c.user.username, provider=c.provider,
                                     key_algo=c.key_algorithm, signature_scheme=c.signature_scheme,
                                     status=c.status.value, mode=c.mode.value, certificates=[base64.b64encode(d).decode() for d in chain]))
        return out


@router.put("/documents", response_model=DocumentOut, status_code=201, openapi_extra={"requestBody": {
    "required": True, "description": "The document's bytes (PDF for PAdES, any file for CAdES), streamed",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
async def upload(request: Request, ctx: ClientContext = Depends(client_context),
                 rt: Runtime = Depends(runtime)) -> DocumentOut:
    """Upload a document (raw body, streamed to disk) to sign later by ``document_id``."""
    declared = request.headers.get("content-length")
    document = await uploads.store(rt.sessions, rt.settings, ctx, request.stream(),
                                   int(declared) if declared and declared.isdigit() else 0,
                                   request.headers.get("content-type", "application/octet-stream"))
    return DocumentOut(document_id=document.id, size=document.size, sha256=document.sha256)


PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d{1,3})(?:$|[,;\s])")


@router.post("/requests", response_model=RequestOut, status_code=201)
async def create_request(body: RequestIn, response: Response, ctx: ClientContext = Depends(client_context),
                         rt: Runtime = Depends(runtime), origin: str | None = Depends(client_origin),
                         idempotency_key: str | None = Header(default=None, max_length=128),
                         prefer: str | None = Header(default=None, max_length=200, description=(
                             "wait=N (at most 60): answer once the request ended, or after N seconds, "
                             "so that a quick signer's result comes in this response (RFC 7240)"))) -> RequestOut:
    """Ask a signer to approve and sign hashes (raw) or documents (CAdES, PAdES, XAdES)."""
    created = await run_in_threadpool(_create, body, response, ctx, rt, origin, idempotency_key)
    return await _preferred_wait(rt, ctx, created, prefer, response)


@router.post("/requests/with-documents", response_model=RequestOut, status_code=201, openapi_extra={"requestBody": {
    "required": True, "description": "One call for documents and request: a `request` part (the JSON of "
                                     "POST /v1/requests, without content or document_id) and one `document` "
                                     "file part per document, in order",
    "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["request", "document"], "properties": {
        "request": {"type": "string", "description": "RequestIn as JSON"},
        "document": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}})
async def create_request_with_documents(request: Request, response: Response,
                                        ctx: ClientContext = Depends(client_context), rt: Runtime = Depends(runtime),
                                        origin: str | None = Depends(client_origin),
                                        idempotency_key: str | None = Header(default=None, max_length=128),
                                        prefer: str | None = Header(default=None, max_length=200)) -> RequestOut:
    """Upload the documents and create their request in one call (``Prefer: wait=N`` as for POST /v1/requests)."""
    declared = request.headers.get("content-length")
    if not (declared and declared.isdigit()):
        raise InvalidInput("a multipart request declares its Content-Length")
    if int(declared) > rt.settings.max_document_bytes:
        raise uploads.DocumentTooLarge(f"documents are limited to {rt.settings.max_document_bytes} bytes")
    form = await request.form(max_files=rt.settings.max_batch, max_fields=4, max_part_size=rt.settings.max_json_bytes)
    try:
        raw_body = form.get("request")
        if not isinstance(raw_body, str):
            raise InvalidInput("the multipart body needs a `request` part holding the request's JSON")
        try:
            body = RequestIn.model_validate_json(raw_body)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))[:80]
            raise InvalidInput(f"request: {where}: {str(first.get('msg', 'invalid'))[:150]}") from exc
        files = [f for f in form.getlist("document") if isinstance(f, UploadFile)]
        if len(files) != len(body.documents) or not files:
            raise InvalidInput(f"{len(files)} document parts for {len(body.documents)} documents in the request")
        for document, upload_file in zip(body.documents, files):
            if document.content is not None or document.document_id is not None:
                raise InvalidInput("in a multipart request, the documents come as parts, not content or document_id")
            stored = await uploads.store(rt.sessions, rt.settings, ctx, _chunks(upload_file), upload_file.size or 0,
                                         upload_file.content_type or "application/octet-stream")
            document.document_id = stored.id
    finally:
        await form.close()
    created = await run_in_threadpool(_create, body, response, ctx, rt, origin, idempotency_key)
    return await _preferred_wait(rt, ctx, created, prefer, response)


async def _chunks(upload_file: UploadFile, size: int = 1 << 20) -> AsyncIterator[bytes]:
    while chunk := await upload_file.read(size):
        yield chunk


async def _preferred_wait(rt: Runtime, ctx: ClientContext, created: RequestOut, prefer: str | None,
                          response: Response) -> RequestOut:
    """``Prefer: wait=N``: the request's state once it ended, or after N seconds (``Preference-Applied``)."""
    found = PREFER_WAIT.search(prefer or "")
    if found is None:
        return created
    seconds = min(int(found.group(1)), 60)
    response.headers["Preference-Applied"] = f"wait={seconds}"
    return await _long_poll(rt, ctx, created.request_id, float(seconds), created)


def _create(body: RequestIn, response: Response, ctx: ClientContext, rt: Runtime, origin: str | None,
            idempotency_key: str | None) -> RequestOut:
    try:
        raw = [submissions.RawDocument(base64.b64decode(h.hash, validate=True), h.title, h.summary)
               for h in body.hashes]
        files = [submissions.FileDocument(
            title=d.title, summary=d.summary,
            content=base64.b64decode(d.content, validate=True) if d.content is not None else None,
            document_id=d.document_id, enveloping=d.enveloping, field_name=d.field, certify=d.certify,
            reason=d.reason, location=d.location, stamp_text=d.stamp, reference_id=d.reference_id,
            placement=d.placement, page=d.page, box=tuple(d.box) if d.box else None) for d in body.documents]
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("a hash or a document content is not valid base64") from exc
    new = submissions.NewRequest(body.credential_id, body.format, body.hash_algorithm, raw, files,
                                   submissions.fingerprint(body.model_dump()), body.after_request_id,
                                   body.level, body.accept_lower_level)
    request, created = submissions.create(rt.sessions, rt.settings, ctx, origin, new, idempotency_key,
                                            rt.ca, body.webhook_url)
    rt.notifier.notify(user_topic(request.user_id))
    if not created:
        response.status_code = 200
    elif request.state is not RequestState.SIGNED:
        return _view(request, rt.settings.public_base_url)  # as just written: its view reads nothing more
    with read_session(rt.sessions) as session:
        return _view(signing_requests.get(session, request.id), rt.settings.public_base_url)


async def _long_poll(rt: Runtime, ctx: ClientContext, request_id: str, wait: float,
                     current: RequestOut | None = None) -> RequestOut:
    """The request's view, once it left pending/approved or after ``wait`` seconds (bounded)."""

    def view() -> RequestOut:
        with read_session(rt.sessions) as session:  # one statement; the write lock only for an overdue request
            request = clients.visible_request(session, ctx, request_id)
            if not signing_requests.overdue(request):
                return _view(request, rt.settings.public_base_url)
        with transaction(rt.sessions) as session:
            request = clients.visible_request(session, ctx, request_id)
            signing_requests.expire_if_due(session, ctx.actor(None), request)
            return _view(request, rt.settings.public_base_url)

    def still_open() -> bool:
        """One small query per wake-up (the request's notifications, and a re-check each second)."""
        with read_connection(rt.sessions) as connection:
            found = signing_requests.current_state(connection, request_id)
        assert found is not None  # view() found it; requests are never deleted
        state, overdue = found
        return state in _OPEN and not overdue

    current = current or await run_in_threadpool(view)
    timeout = max(wait, 0.0)  # bounded by the callers
    if current.state not in _OPEN_NAMES or timeout <= 0:
        return current
    # Unless decided sooner, a pending request ends at its expiry: it is looked at again then.
    expiring = current.expires_at if current.state == RequestState.PENDING.value else None
    # The long poll waits in the event loop: it holds a pool thread only while it queries.
    await rt.notifier.wait_for_async(still_open, lambda open_: not open_, timeout, topic=request_topic(request_id),
                                     changes_in=lambda _: expiring and seconds_until(expiring))
    return await run_in_threadpool(view)


@router.get("/requests/{request_id}", response_model=RequestOut)
async def get_request(request_id: str,
                      wait: float = Query(0, ge=0, le=60, allow_inf_nan=False,
                                          description="Long poll: seconds (at most the server's long-poll bound)."),
                      ctx: ClientContext = Depends(client_context),
                rt: Runtime = Depends(runtime)) -> RequestOut:
    """Status; with ``wait`` (seconds) long-polls until the request leaves pending/approved."""
    return await _long_poll(rt, ctx, request_id, min(wait, rt.settings.long_poll_seconds))


_OPEN = (RequestState.PENDING, RequestState.APPROVED)
_OPEN_NAMES = frozenset(s.value for s in _OPEN)


SMALL_DOCUMENT_BYTES = 1 << 20
"""A signed document up to this size is read whole in the route's own thread and sent in one piece;
a larger one is streamed (each read of a stream is a hand-off between threads)."""


@router.get("/requests/{request_id}/documents/{position}", response_class=FileResponse)
def signed_document(request_id: str, position: int, ctx: ClientContext = Depends(client_context),
                    rt: Runtime = Depends(runtime)) -> Response:
    """A signed document: sent whole when small, streamed from disk when large."""
    with read_session(rt.sessions) as session:
        path, media = submissions.result_file(session, ctx, request_id, position)
    name = f"{request_id}-{position}{path.suffix}"
    try:
        with path.open("rb") as stored:
            found = os.fstat(stored.fileno())
            if found.st_size <= SMALL_DOCUMENT_BYTES:
                return Response(stored.read(), media_type=media,
                                headers={"Content-Disposition": f'attachment; filename="{name}"'})
    except FileNotFoundError as exc:  # removed (the request's retention ended) since it was looked up
        raise DocumentGone(f"the signed document {position} of request {request_id} is no longer stored") from exc
    return FileResponse(path, media_type=media, filename=name, stat_result=found)


class DeliveryOut(BaseModel):
    event_id: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


@router.get("/requests/{request_id}/webhooks", response_model=list[DeliveryOut])
def webhook_log(request_id: str, ctx: ClientContext = Depends(client_context),
                rt: Runtime = Depends(runtime)) -> list[DeliveryOut]:
    """The delivery log of a request's webhooks."""
    with read_transaction(rt.sessions) as session:
        clients.visible_request(session, ctx, request_id)
        return [DeliveryOut(event_id=d.id, url=d.url, state=d.state.value, attempts=d.attempts,
                            last_status=d.last_status, last_error=d.last_error,
                            delivered_at=signing_requests.aware(d.delivered_at) if d.delivered_at else None)
                for d in webhooks.deliveries_for(session, request_id)]


@router.post("/requests/{request_id}/cancel", response_model=RequestOut)
def cancel(request_id: str, ctx: ClientContext = Depends(client_context), rt: Runtime = Depends(runtime),
           origin: str | None = Depends(client_origin)) -> RequestOut:
    user_id = submissions.cancel(rt.sessions, ctx, origin, request_id)
    rt.notifier.notify(request_topic(request_id), user_topic(user_id), WORK_TOPIC)  # its webhooks
    with read_session(rt.sessions) as session:
        return _view(signing_requests.get(session, request_id), rt.settings.public_base_url)
