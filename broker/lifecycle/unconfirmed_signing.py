"""Unconfirmed signing by an administrator (``kyso sign --unconfirmed``), sandbox data dirs only.

The only path besides :mod:`broker.lifecycle.sole_control` that uses a signer's key; the CLI
refuses it outside a sandbox, and every such signature is audited as unconfirmed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from broker import audit
from broker import credentials as credential_service
from broker.audit import Actor
from broker.db.models import Credential
from broker.errors import InvalidInput
from ca_adapters import CaAdapter
from hsm import Hsm
from signer import cades, pades
from signer.algorithms import file_digest
from signer.hsm_signer import HsmKeySigner


@dataclass(frozen=True)
class PdfRequest:
    input_path: Path
    output_path: Path
    options: pades.PadesOptions


def sign_pdf(session: Session, actor: Actor, hsm: Hsm, credential: Credential, provider: CaAdapter,
             request: PdfRequest) -> None:
    _check_input(request.input_path)
    key = _key(hsm, credential, provider)
    pades.sign(key, request.input_path, request.output_path, request.options)
    audit.record(
        session,
        actor,
        "sign.pades",
        target_type="credential",
        target_id=credential.id,
        details={
            "confirmation": "none (unconfirmed, sandbox)",
            "field": request.options.field_name,
            "certify": request.options.certify,
            "document_sha256": file_digest(request.input_path).hex(),
        },
    )


def sign_cades(
    session: Session,
    actor: Actor,
    hsm: Hsm,
    credential: Credential,
    provider: CaAdapter,
    input_path: Path,
    output_path: Path,
    *,
    detached: bool,
) -> None:
    _check_input(input_path)
    key = _key(hsm, credential, provider)
    if detached:
        digest = file_digest(input_path).hex()
        signature = cades.sign(key, content_digest=bytes.fromhex(digest), detached=True)
    else:
        data = input_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        signature = cades.sign(key, content=data, detached=False)
    tmp = output_path.with_name(output_path.name + ".part")
    tmp.write_bytes(signature)
    tmp.replace(output_path)
    audit.record(
        session,
        actor,
        "sign.cades",
        target_type="credential",
        target_id=credential.id,
        details={"confirmation": "none (unconfirmed, sandbox)", "detached": detached, "document_sha256": digest},
    )


def _key(hsm: Hsm, credential: Credential, provider: CaAdapter) -> HsmKeySigner:
    """The same checks as a confirmed signature: usable, unit signing remotely, not revoked at the provider."""
    credential_service.check_signing_allowed(credential)
    credential_service.check_not_revoked(credential, provider)
    return credential_service.key_signer(hsm, credential)


def _check_input(path: Path) -> None:
    if not path.is_file():
        raise InvalidInput(f"no such file: {path}")

