"""``POST /v1/validations``: validate any signed document and explain the verdict.

The body is streamed to a private temporary directory under the document size bound, whatever its
form: the signed file raw (``application/pdf``, ``application/pkcs7-signature``...), multipart
(``document`` and, for a detached CMS, ``content``), or JSON with both inline in base64. The answer
is the JSON report; ``Accept: text/html`` or ``application/pdf`` gives the human report.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.formparsers import MultiPartException, MultiPartParser

from api.client_auth import client_context
from api.deps import runtime
from api.problems import PROBLEM_RESPONSES, problem
from broker.clients import ClientContext
from broker.runtime import Runtime
from ca_adapters import provider_names
from signer import reports, validation
from signer.errors import SignerError

router = APIRouter(prefix="/v1", tags=["validation"], responses=PROBLEM_RESPONSES)

_CHUNK = 1 << 16


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def trust_store(rt: Runtime) -> validation.TrustStore:
    if rt.settings.trust_store is not None:
        return validation.load_trust_store(rt.settings.trust_store)
    ders = {der for name in provider_names() for der in rt.ca(name).trust_anchors()}
    roots = [cert for der in ders for cert in validation.parse_certificates(der, "a provider's root")]
    return validation.trust_store_of(roots, "the providers' roots")


async def _spool(request: Request, target: Path, limit: int) -> int:
    size = 0
    with target.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "document_too_large", f"documents are limited to {limit} bytes")
            out.write(chunk)
    return size


async def _replay(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


async def _from_multipart(request: Request, body: Path, work: Path, limit: int) -> tuple[Path, Path | None, str | None]:
    parser = MultiPartParser(request.headers, _replay(body), max_files=2, max_fields=8, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _Refused(400, "invalid_request", f"the multipart body cannot be read: {exc.message}") from exc
    try:
        paths: dict[str, Path] = {}
        name = None
        for key in ("document", "content"):
            part = form.get(key)
            if part is None or isinstance(part, str):
                continue
            name = part.filename if key == "document" else name
            paths[key] = work / key
            with paths[key].open("wb") as out:
                while chunk := await part.read(_CHUNK):
                    out.write(chunk)
        if "document" not in paths:
            raise _Refused(400, "invalid_request", "the multipart body needs a 'document' file part")
        return paths["document"], paths.get("content"), name
    finally:
        await form.close()


def _from_json(body: Path, work: Path) -> tuple[Path, Path | None, str | None, dict[str, Any]]:
    try:
        data = json.loads(body.read_bytes())
        if not isinstance(data, dict) or not isinstance(data.get("document"), str):
            raise ValueError("a 'document' string (base64) is required")
        out: dict[str, Path] = {}
        for key in ("document", "content"):
            if isinstance(data.get(key), str):
                out[key] = work / key
                out[key].write_bytes(base64.b64decode(data[key], validate=True))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise _Refused(400, "invalid_request", f"the JSON body cannot be read: {exc}"[:200]) from exc
    name = data.get("name") if isinstance(data.get("name"), str) else None
    return out["document"], out.get("content"), name, data


def _options(rt: Runtime, at: datetime | None, fetch: bool) -> validation.ValidationOptions:
    if fetch and not rt.settings.validation_fetch_revocation:
        raise _Refused(403, "policy_violation", "this server validates from embedded revocation data only "
                                                "(KYSO_VALIDATION_FETCH_REVOCATION is off)")
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    if at is not None and at > datetime.now(timezone.utc):
        raise _Refused(400, "invalid_input", "a validation time cannot be in the future")
    return validation.ValidationOptions(trust_store(rt), at=at, fetch_revocation=fetch)


_INPUT_STATUS = {"content_required": 400, "invalid_trust_store": 503}


@router.post("/validations", responses={200: {"description": "The validation report (JSON, HTML or PDF)",
                                              "content": {"text/html": {}, "application/pdf": {}}}})
async def validate(request: Request, ctx: ClientContext = Depends(client_context), rt: Runtime = Depends(runtime),
                   at: datetime | None = Query(None, description="Validate as at this time (ISO 8601); default now"),
                   fetch: bool = Query(False, description="Fetch OCSP/CRL named in the certificates, if allowed"),
                   lang: Literal["vi", "en"] = Query("vi", description="Language of the HTML or PDF report"),
                   name: str | None = Query(None, max_length=255, description="The document's name, for the report"),
                   ) -> Response:
    """Validate every signature of a signed PDF or CMS (kyso's or anyone's) against the trust store.

    Each signature gets an ETSI TS 119 102-2 indication (TOTAL_PASSED, TOTAL_FAILED, INDETERMINATE),
    its sub-indication and the evidence: signer, chain, revocation data, timestamps, PDF changes.
    """
    ctx.require("read")
    limit = rt.settings.max_document_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > 2 * limit:  # base64 JSON and multipart add a little
        return problem(413, "document_too_large", f"documents are limited to {limit} bytes")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    with tempfile.TemporaryDirectory(prefix="kyso-validation-") as tmp:
        work = Path(tmp)
        try:
            body = work / "body"
            await _spool(request, body, 2 * limit if media in ("application/json", "multipart/form-data") else limit)
            content = None
            if media == "multipart/form-data":
                document, content, given = await _from_multipart(request, body, work, limit)
            elif media == "application/json":
                document, content, given, data = await run_in_threadpool(_from_json, body, work)
                at = _json_time(data.get("at")) if data.get("at") is not None else at
                fetch = bool(data.get("fetch", fetch))
            else:
                document, given = body, None
            for path in (document, content):
                if path is not None and path.stat().st_size > limit:
                    raise _Refused(413, "document_too_large", f"documents are limited to {limit} bytes")
            options = await run_in_threadpool(_options, rt, at, fetch)
            report = await run_in_threadpool(validation.validate_file, document, options, content=content,
                                             name=name or given or "document")
        except _Refused as exc:
            return problem(exc.status, exc.code, exc.detail)
        except SignerError as exc:
            return problem(_INPUT_STATUS.get(exc.code, 422), exc.code, exc.message)
    accept = request.headers.get("accept", "")
    if "text/html" in accept:
        return HTMLResponse(reports.render_html(report, lang))
    if "application/pdf" in accept:
        pdf = await run_in_threadpool(reports.render_pdf, report, lang)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="validation-report.pdf"'})
    return JSONResponse(report.as_dict())


def _json_time(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise _Refused(400, "invalid_input", "'at' is an ISO 8601 time") from exc
