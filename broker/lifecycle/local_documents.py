"""A document on this machine signed through a confirmed request (``kyso sign``).

prepare (the document pipeline) → a request bound to its data-to-be-signed → the signer approves
(:mod:`broker.lifecycle.waiting`) → :mod:`broker.lifecycle.sole_control` signs → the pipeline
finishes the document at the asked level. The same pipeline, levels and file rules as the REST API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from broker import credentials
from broker.audit import Actor
from broker.db.engine import read_transaction
from broker.db.models import Credential
from broker.errors import InvalidInput
from broker.lifecycle import signing_requests
from broker.settings import Settings
from ca_adapters import CaAdapter
from signer import ltv, pipeline


@dataclass(frozen=True)
class LocalDocument:
    """A prepared local document and the request its signer is asked to approve."""

    request_id: str
    verification_code: str
    expires_at: str
    pending: pipeline.PendingDocument
    level: ltv.Level


def start(session: Session, settings: Settings, actor: Actor, credential: Credential, spec: pipeline.Spec,
          input_path: Path, output_path: Path, *, provider: CaAdapter, level: ltv.Level = ltv.Level.B_B,
          relying_system: str = "kyso-cli") -> LocalDocument:
    """Prepare the document and open a request bound to its data-to-be-signed."""
    if not input_path.is_file():
        raise InvalidInput(f"no such file: {input_path}")
    credentials.check_signing_allowed(credential)
    options = signing_requests.spec_options(spec)
    signing_requests.check_shown(input_path.name[:255], "", options)
    pending = pipeline.prepare(credentials.signing_material(credential), spec, input_path, output_path, level=level)
    try:
        summary = f"{pipeline.FORMAT_NAMES[pending.kind]} signature of {input_path.name}, SHA-256 {pending.document_sha256}"
        request = signing_requests.create(
            session, settings, actor, credential,
            [signing_requests.DocumentToSign(pending.dtbs_digest, input_path.name[:255], summary, options)],
            relying_system=relying_system, provider=provider)
    except BaseException:
        pipeline.discard(pending)
        raise
    return LocalDocument(request.id, request.verification_code, signing_requests.aware(request.expires_at).isoformat(),
                         pending, level)


def complete(factory: sessionmaker[Session], sign_approved: Callable[[str], list[bytes]], local: LocalDocument,
             services: ltv.LongTermServices | None = None) -> ltv.Level:
    """Sign the approved data-to-be-signed and write the signed document; the level reached.

    ``sign_approved`` is :func:`broker.lifecycle.sole_control.sign_approved` on this process's
    token, or the running server's (its admin socket) when one holds the token.
    """
    try:
        [signature] = sign_approved(local.request_id)
    except BaseException:
        abandon(local)
        raise
    with read_transaction(factory) as session:
        material = credentials.signing_material(signing_requests.get(session, local.request_id).credential)
    return pipeline.finish(local.pending, signature, material, local.level, services)


def abandon(local: LocalDocument) -> None:
    pipeline.discard(local.pending)
