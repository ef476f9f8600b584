"""Unconfirmed signing by an administrator (``kyso sign --unconfirmed``), sandbox data dirs only.

The only path besides :mod:`broker.lifecycle.sole_control` that uses a signer's key; the CLI
refuses it outside a sandbox, every such signature is audited as unconfirmed, and it checks what
every confirmed signature checks: the credential usable, its unit signing remotely, the provider
not having revoked it. The document goes through the same pipeline as every other.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from broker import audit
from broker import credentials as credential_service
from broker.audit import Actor
from broker.db.models import Credential
from broker.errors import InvalidInput
from ca_adapters import CaAdapter
from hsm import Hsm
from signer import ltv, pipeline


def sign(session: Session, actor: Actor, hsm: Hsm, credential: Credential, provider: CaAdapter, spec: pipeline.Spec,
         input_path: Path, output_path: Path, *, level: ltv.Level = ltv.Level.B_B,
         services: ltv.LongTermServices | None = None) -> ltv.Level:
    """Sign ``input_path`` into ``output_path`` with no confirmation (audited as such); the level reached."""
    if not input_path.is_file():
        raise InvalidInput(f"no such file: {input_path}")
    credential_service.check_signing_allowed(credential)
    credential_service.check_not_revoked(credential, provider)
    key = credential_service.key_signer(hsm, credential)
    pending, reached = pipeline.sign(key, spec, input_path, output_path, level=level, services=services)
    audit.record(session, actor, f"sign.{pending.kind}", target_type="credential", target_id=credential.id,
                 details={"confirmation": "none (unconfirmed, sandbox)", "document_sha256": pending.document_sha256,
                          "level": reached.value, **_details(spec)})
    return reached


def _details(spec: pipeline.Spec) -> dict[str, object]:
    if isinstance(spec, pipeline.PadesSpec):
        return {"field": spec.field_name, "certify": spec.certify}
    if isinstance(spec, pipeline.XadesSpec):
        return {"reference_id": spec.reference_id, "placement": spec.placement}
    return {"detached": not spec.enveloping}
