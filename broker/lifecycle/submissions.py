"""The native REST API's signing requests: raw hashes, or CAdES, PAdES or XAdES documents.

On creation each document goes through the document pipeline (:mod:`signer.pipeline`): its
data-to-be-signed is computed and its pending state kept in the request's payload, so that the
approval binds exactly what will be signed. Once approved, :func:`finish` (run by the signing
worker) signs through sole control and the pipeline writes the results. An ``Idempotency-Key`` makes a retry return the same request; the same key
with another body is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker import credentials as credential_service
from broker.clients import ClientContext, visible_credential, visible_request
from broker.credentials import delegated
from broker.db.engine import read_session, transaction
from broker.db.models import (
    Credential,
    RelyingSystem,
    RequestState,
    SigningRequest,
)
from broker.errors import Conflict, DocumentGone, InvalidInput, KysoError, NotFound
from broker.lifecycle import load_limits, signing_requests, uploads, webhooks
from broker.lifecycle.payload import RequestPayload
from broker.settings import Settings
from ca_adapters import CaAdapter
from signer import ltv, pipeline
from signer.algorithms import digest_name, file_digest
from signer.errors import SignerError


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class RawDocument:
    digest: bytes
    title: str
    summary: str = ""


@dataclass(frozen=True)
class FileDocument:
    """A document to sign (``content`` inline or an uploaded ``document_id``) as CAdES, PAdES or XAdES."""

    title: str
    summary: str = ""
    content: bytes | None = None
    document_id: str | None = None
    enveloping: bool = False
    field_name: str = "Signature1"
    certify: bool = False
    reason: str | None = None
    location: str | None = None
    stamp_text: str | None = None
    reference_id: str | None = None
    """XAdES: the Id of the element signed."""
    placement: str | None = None
    """XAdES: where the signature goes (``/Hoso/CKy_Dvi``, ``//Cky``)."""
    page: int | None = None
    """PAdES, a field the document lacks: its page (1 is the first) and box in points."""
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class NewRequest:
    credential_id: str
    format: str
    hash_algorithm: str = "sha256"
    raw: list[RawDocument] = field(default_factory=list)
    files: list[FileDocument] = field(default_factory=list)
    fingerprint: str = ""
    after_request_id: str | None = None
    """Sign the signed documents of this earlier request (the account holder after the chief accountant)."""
    level: str = "B-B"
    accept_lower_level: bool = False
    """If the TSA or revocation data is unavailable, deliver the highest level reached instead of failing."""


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# -- creation ----------------------------------------------------------------------------------------------


def create(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext, origin: str | None,
           new: NewRequest, idempotency_key: str | None, ca_for: Callable[[str], CaAdapter],
           webhook_url: str | None = None) -> tuple[SigningRequest, bool]:
    """Create a request (or return the one an earlier call with the same key created); a refusal is audited."""
    try:
        return _create(factory, settings, ctx, origin, new, idempotency_key, ca_for, webhook_url)
    except (KysoError, SignerError) as exc:
        if not hasattr(exc, "retry_after"):  # load shedding is counted in metrics, not written per call
            audit.record_refusal(factory, ctx.actor(origin), "request.create", exc, target_type="credential",
                                 target_id=new.credential_id, details={"format": new.format[:16]})
        raise


def _create(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext, origin: str | None,
            new: NewRequest, idempotency_key: str | None, ca_for: Callable[[str], CaAdapter],
            webhook_url: str | None) -> tuple[SigningRequest, bool]:
    ctx.require("sign")
    if idempotency_key is not None:
        existing = _by_key(factory, ctx, idempotency_key, new.fingerprint)
        if existing is not None:
            return existing, False
    hash_name = digest_name(new.hash_algorithm)
    level = _level(new)
    with read_session(factory) as session:  # no snapshot in common needed: creation checks the credential again
        load_limits.admit(session.connection(), settings, ctx.relying_system)
        credential = visible_credential(session, ctx, new.credential_id)
        credential_service.check_signing_allowed(credential)  # before any document work; again at creation
        if webhook_url is not None:
            rs = session.scalar(select(RelyingSystem).where(RelyingSystem.name == ctx.relying_system))
            webhooks.check_url(webhook_url, rs.webhook_allowlist if rs else [],
                               allow_private=settings.webhook_allow_private)
    work = settings.blobs / "work" / uuid.uuid4().hex
    try:
        docs, pending = _prepare(factory, settings, ctx, credential, new, hash_name, level, work)
        upload_ids = tuple(d.document_id for d in new.files)
        with transaction(factory) as session:
            credential = visible_credential(session, ctx, new.credential_id)
            request = signing_requests.create(
                session, settings, ctx.actor(origin), credential, docs, relying_system=ctx.relying_system,
                provider=ca_for(credential.provider), hash_algorithm=hash_name, client_id=ctx.client_id,
                idempotency_key=idempotency_key, request_fingerprint=new.fingerprint, format=new.format,
                payload=RequestPayload(work=work, documents=tuple(pending), uploads=upload_ids, webhook_url=webhook_url,
                                       level=level, accept_lower_level=new.accept_lower_level),
                # its work dir: housekeeping removes it when the request ends
                **({"blobs": "live"} if new.format != "raw" else {}))
            if new.format != "raw":
                uploads.hold(session, [d.document_id for d in new.files if d.document_id], request.expires_at)
            delegated_request = request.credential.delegated
        if delegated_request:
            delegated.forward(factory, ca_for, ctx.actor(origin), request.id)
            with read_session(factory) as session:
                request = signing_requests.get(session, request.id)
        return request, True
    except IntegrityError:
        # A concurrent retry with the same key won the race: answer with its request.
        shutil.rmtree(work, ignore_errors=True)
        existing = _by_key(factory, ctx, idempotency_key or "", new.fingerprint)
        if existing is None:
            raise
        return existing, False
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _level(new: NewRequest) -> ltv.Level:
    up_to_lt = (ltv.Level.B_B, ltv.Level.B_T, ltv.Level.B_LT)
    allowed = {"raw": (ltv.Level.B_B,), "cades": up_to_lt, "xades": up_to_lt}.get(new.format, tuple(ltv.Level))
    try:
        return ltv.parse_level(new.level, allowed=allowed)
    except ltv.UnsupportedLevel as exc:
        raise InvalidInput(f"{new.format}: {exc.message}") from exc


def _by_key(factory: sessionmaker[Session], ctx: ClientContext, key: str, body_fingerprint: str) -> SigningRequest | None:
    with read_session(factory) as session:  # one statement: no transaction around it
        existing = session.scalar(select(SigningRequest).where(SigningRequest.client_id == ctx.client_id,
                                                               SigningRequest.idempotency_key == key))
        if existing is not None and existing.request_fingerprint != body_fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was used with another request body")
        return existing


def _prepare(factory: sessionmaker[Session], settings: Settings, ctx: ClientContext, credential: Credential,
             new: NewRequest, hash_name: str, level: ltv.Level, work: Path,
             ) -> tuple[list[signing_requests.DocumentToSign], list[pipeline.PendingDocument]]:
    if new.format == "raw":
        if new.files or not new.raw:
            raise InvalidInput("a raw request carries hashes, at least one")
        return [signing_requests.DocumentToSign(d.digest, d.title, d.summary) for d in new.raw], []
    if new.format not in pipeline.FORMAT_NAMES or new.raw or not new.files:
        raise InvalidInput("format is raw, cades, pades or xades, with hashes or documents accordingly")
    limit = credential_service.batch_limit(credential, settings.max_batch)
    if len(new.files) > limit:
        raise InvalidInput(f"at most {limit} documents per request with credential {credential.id}")
    if hash_name != "sha256":
        raise InvalidInput("documents are signed with SHA-256")
    specs = [_spec(new.format, doc, credential.user.full_name) for doc in new.files]
    # What the signer will be shown, checked before any work: the options that change a signature's meaning too.
    shown = [signing_requests.spec_options(spec) for spec in specs]
    for n, doc in enumerate(new.files):
        signing_requests.check_shown(doc.title, doc.summary, shown[n], f"document {n}")
    uploads.private_dir(settings.blobs)
    uploads.private_dir(work.parent)
    work.mkdir(mode=0o700)
    os.chmod(work, 0o700)
    material = credential_service.signing_material(credential)
    docs, pending = [], []
    previous = _previous_results(factory, ctx, new.after_request_id) if new.after_request_id else []
    for n, (doc, spec) in enumerate(zip(new.files, specs)):
        output = work / pipeline.output_name(spec, f"out-{n}")
        stored = _stored_source(factory, ctx, doc, previous[n] if n < len(previous) else None)
        if isinstance(spec, pipeline.CadesSpec) and not spec.enveloping:  # its digest is all it needs
            pending.append(pipeline.prepare_detached(material, _sha256_of(doc, stored), output))
            docs.append(_to_sign(new.format, doc, pending[-1], shown[n]))
            continue
        source = _source(doc, stored, work / f"in-{n}")
        if isinstance(spec, pipeline.PadesSpec) and not pipeline.is_pdf(source):
            raise InvalidInput(f"document {n} is not a PDF")
        try:
            prepared = pipeline.prepare(material, spec, source, output, level=level)
        except SignerError as exc:  # its own class and code, naming the document
            exc.message = f"document {n}: {exc.message}"
            exc.args = (exc.message,)
            raise
        pending.append(prepared)
        docs.append(_to_sign(new.format, doc, prepared, shown[n]))
    return docs, pending


def _to_sign(format_: str, doc: FileDocument, prepared: pipeline.PendingDocument,
             shown: dict[str, Any]) -> signing_requests.DocumentToSign:
    summary = doc.summary or f"{pipeline.FORMAT_NAMES[format_]}, SHA-256 {prepared.document_sha256}"
    return signing_requests.DocumentToSign(prepared.dtbs_digest, doc.title, summary, shown)


def _spec(format_: str, doc: FileDocument, signer_name: str) -> pipeline.Spec:
    if format_ == "pades":
        return pipeline.PadesSpec(doc.field_name, doc.certify, doc.reason or None, doc.location or None,
                                  doc.stamp_text or None, signer_name, doc.page, doc.box)
    if format_ == "xades":
        if not doc.reference_id or not doc.placement:
            raise InvalidInput("an XML signature needs reference_id (the Id of the element signed) and placement "
                               "(where the signature goes, e.g. /Hoso/CKy_Dvi)")
        return pipeline.XadesSpec(doc.reference_id, doc.placement)
    return pipeline.CadesSpec(enveloping=doc.enveloping)


def _previous_results(factory: sessionmaker[Session], ctx: ClientContext, request_id: str) -> list[Path]:
    with read_session(factory) as session:
        previous = visible_request(session, ctx, request_id)
        if previous.state is not RequestState.SIGNED or previous.format == "raw":
            raise InvalidInput(f"request {request_id} has no signed documents to sign after")
        if previous.blobs == "gone":
            raise DocumentGone(f"the signed documents of request {request_id} were deleted after their retention period")
        return RequestPayload.of(previous).outputs


def _stored_source(factory: sessionmaker[Session], ctx: ClientContext, doc: FileDocument,
                   previous: Path | None = None) -> Path | None:
    """Where a document to sign is stored (an upload, the earlier request's result); None for
    content given inline."""
    given = [x is not None for x in (doc.content, doc.document_id, previous)]
    if sum(given) != 1:
        raise InvalidInput("each document needs exactly one of content, document_id, or after_request_id's result")
    if doc.content is not None:
        return None
    if previous is not None:
        return previous
    with read_session(factory) as session:
        return Path(uploads.document(session, ctx, str(doc.document_id)).path)


def _sha256_of(doc: FileDocument, stored: Path | None) -> bytes:
    if stored is None:
        assert doc.content is not None
        return hashlib.sha256(doc.content).digest()
    try:
        return file_digest(stored)
    except FileNotFoundError as exc:
        raise DocumentGone("the document to sign is no longer stored (deleted, or not restored)") from exc


def _source(doc: FileDocument, stored: Path | None, target: Path) -> Path:
    """The document as a file of the request's own (``target``), which its pipeline reads again."""
    if stored is None:
        assert doc.content is not None
        uploads.private_file(target)
        target.write_bytes(doc.content)
        return target
    if not stored.is_file():
        raise DocumentGone("the document to sign is no longer stored (deleted, or not restored)")
    try:
        os.link(stored, target)  # from here on the request holds its own link: deleting the upload leaves it
    except FileNotFoundError as exc:
        raise DocumentGone("the document to sign is no longer stored (deleted, or not restored)") from exc
    except OSError:  # another file system
        uploads.private_file(target)
        shutil.copyfile(stored, target)
    os.chmod(target, 0o600)
    return target



def cancel(factory: sessionmaker[Session], ctx: ClientContext, origin: str | None, request_id: str) -> int:
    """Cancel one of the caller's pending requests (the ``sign`` scope); the signer's user id."""
    try:
        ctx.require("sign")
        with transaction(factory) as session:
            request = visible_request(session, ctx, request_id)
            signing_requests.cancel(session, ctx.actor(origin), request)
            return request.user_id
    except KysoError as exc:
        audit.record_refusal(factory, ctx.actor(origin), "request.cancel", exc, target_type="request",
                             target_id=request_id)
        raise


# -- after approval -----------------------------------------------------------------------------------


def result_file(session: Session, ctx: ClientContext, request_id: str, position: int) -> tuple[Path, str]:
    request = visible_request(session, ctx, request_id)
    if request.state is not RequestState.SIGNED or request.format == "raw":
        raise NotFound(f"request {request_id} has no signed document (state {request.state.value})")
    documents = RequestPayload.of(request).documents
    if not 0 <= position < len(documents):
        raise NotFound(f"request {request_id} has no document {position}")
    path = documents[position].output
    if request.blobs == "gone":  # a file removed meanwhile is found missing where it is opened
        raise DocumentGone(f"the signed document {position} of request {request_id} is no longer stored")
    return path, MEDIA_TYPES[path.suffix]


MEDIA_TYPES = {".pdf": "application/pdf", ".p7s": "application/pkcs7-signature", ".p7m": "application/pkcs7-mime",
               ".xml": "application/xml"}

