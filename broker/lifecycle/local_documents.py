"""Signing a document through a confirmed request: prepare → the signer approves → sign → embed.

The data to be signed (the digest of the CAdES or PAdES signed attributes) is what the request
binds and the signer approves; :mod:`broker.lifecycle.sole_control` signs it once approved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from broker import approvals, credentials
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Credential, RequestState
from broker.errors import InvalidInput, KysoError, NotFound
from broker.lifecycle import signing_requests
from broker.notify import Notifier, request_topic
from broker.settings import Settings
from ca_adapters import CaAdapter
from signer import cades, pades
from signer.algorithms import file_digest


class RequestRejected(KysoError):
    code = "request_rejected"


class ApprovalTimeout(KysoError):
    code = "request_expired"


@dataclass
class PendingDocument:
    request_id: str
    verification_code: str
    expires_at: str
    pdf: pades.PreparedPdf | None
    cms: cades.CadesToBeSigned | None
    output_path: Path



def start(
    session: Session, settings: Settings, actor: Actor, credential: Credential, input_path: Path, output_path: Path,
    *, provider: CaAdapter, pdf_options: pades.PadesOptions | None, detached: bool = True,
    relying_system: str = "kyso-cli",
) -> PendingDocument:
    """Prepare the document and open a request bound to its data-to-be-signed."""
    if not input_path.is_file():
        raise InvalidInput(f"no such file: {input_path}")
    credentials.check_signing_allowed(credential)
    m = credentials.signing_material(credential)
    document_hash = file_digest(input_path).hex()
    prepared_pdf = prepared_cms = None
    if pdf_options is not None:
        prepared_pdf = pades.prepare(m.certificate, m.intermediates, m.scheme, m.signature_size, input_path,
                                     output_path, pdf_options)
        dtbs, kind = prepared_pdf.dtbs_digest, "PAdES"
    else:
        if detached:
            prepared_cms = cades.prepare(m.certificate, m.intermediates, content_digest=bytes.fromhex(document_hash))
        else:
            prepared_cms = cades.prepare(m.certificate, m.intermediates, content=input_path.read_bytes(),
                                         detached=False)
        dtbs, kind = prepared_cms.digest, "CAdES"
    try:
        request = signing_requests.create(
            session, settings, actor, credential,
            [signing_requests.DocumentToSign(dtbs, input_path.name[:255],
                                     f"{kind} signature of {input_path.name}, SHA-256 {document_hash}",
                                     _shown(pdf_options))],
            relying_system=relying_system, provider=provider,
        )
    except BaseException:
        if prepared_pdf is not None:
            pades.discard(prepared_pdf)
        raise
    return PendingDocument(request.id, request.verification_code, signing_requests.aware(request.expires_at).isoformat(),
                           prepared_pdf, prepared_cms, output_path)


def _shown(options: pades.PadesOptions | None) -> dict[str, str | bool]:
    """The PAdES options the signer is shown and approves (none for CAdES)."""
    if options is None:
        return {}
    return signing_requests.pades_options(field_name=options.field_name, certify=options.certify, reason=options.reason,
                                  location=options.location, stamp_text=options.stamp_text)


def wait_for_decision(factory: sessionmaker[Session], notifier: Notifier, request_id: str, actor: Actor,
                      timeout: float | None = None) -> RequestState:
    """Block until the request is decided, expires, or ``timeout`` passes (then still pending)."""
    limit = timeout if timeout is not None else float("inf")
    return notifier.wait_for(_state_check(factory, actor, request_id), _decided, limit, recheck=0.5)


async def wait_for_decision_async(factory: sessionmaker[Session], notifier: Notifier, request_id: str, actor: Actor,
                                  timeout: float) -> RequestState:
    """:func:`wait_for_decision` in a coroutine, holding no thread while it waits."""
    return await notifier.wait_for_async(_state_check(factory, actor, request_id), _decided, timeout, recheck=0.5,
                                         topic=request_topic(request_id))


def _state_check(factory: sessionmaker[Session], actor: Actor, request_id: str) -> Callable[[], RequestState]:
    def check() -> RequestState:
        state = approvals.expire_due(factory, actor, request_id)
        if state is None:
            raise NotFound(f"no signing request {request_id!r}")
        return state

    return check


def _decided(state: RequestState) -> bool:
    return state is not RequestState.PENDING


def complete(factory: sessionmaker[Session], sign_approved: Callable[[str], list[bytes]], pending: PendingDocument) -> None:
    """Sign the approved data-to-be-signed and write the signed document.

    ``sign_approved`` is :func:`broker.lifecycle.sole_control.sign_approved` on this process's
    token, or the running server's (its admin socket) when one holds the token.
    """
    try:
        [signature] = sign_approved(pending.request_id)
    except BaseException:
        abandon(pending)
        raise
    with transaction(factory) as session:
        m = credentials.signing_material(signing_requests.get(session, pending.request_id).credential)
    if pending.pdf is not None:
        try:
            pades.finish(pending.pdf, signature, m.certificate, m.intermediates, m.scheme)
        except BaseException:
            abandon(pending)
            raise
    else:
        assert pending.cms is not None
        pss = cades.default_pss(m.scheme, pending.cms.hash_name)
        data = cades.assemble(pending.cms, signature, m.certificate, m.intermediates, m.scheme, pss)
        tmp = pending.output_path.with_name(pending.output_path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(pending.output_path)


def abandon(pending: PendingDocument) -> None:
    if pending.pdf is not None:
        pades.discard(pending.pdf)


def raise_for_state(state: RequestState, request_id: str) -> None:
    if state is RequestState.REJECTED:
        raise RequestRejected(f"the signer refused request {request_id}; nothing was signed")
    if state is not RequestState.APPROVED:
        raise ApprovalTimeout(f"request {request_id} ended {state.value} without approval; nothing was signed")
