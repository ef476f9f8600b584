"""The validation report as pure data, in the vocabulary of ETSI TS 119 102-2.

One ``SignatureVerdict`` per signature (document timestamps included): the indication
(TOTAL_PASSED, TOTAL_FAILED, INDETERMINATE), its sub-indication (EN 319 102-1 § 5.1.3) and the
evidence behind it. ``as_dict`` gives the JSON form; the human reports render the same data.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Indication(str, enum.Enum):
    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    serial: str
    """Hexadecimal."""
    not_before: datetime
    not_after: datetime
    sha256: str
    trust_anchor: bool = False


@dataclass(frozen=True)
class RevocationInfo:
    kind: str
    """``CRL`` or ``OCSP``."""
    source: str
    """``embedded`` (in the document) or ``fetched`` (from the URL in a certificate)."""
    issuer: str
    issued_at: datetime | None
    """A CRL's thisUpdate, an OCSP response's producedAt."""
    sha256: str


@dataclass(frozen=True)
class TimestampInfo:
    kind: str
    """``signature`` (over the signature value), ``content`` or ``document`` (a PDF document timestamp)."""
    time: datetime | None
    tsa: str
    indication: Indication
    sub_indication: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Modifications:
    """What changed in a PDF after a signature (its later revisions)."""

    level: str
    """pyHanko's modification level: NONE, LTA_UPDATES, FORM_FILLING, ANNOTATIONS or OTHER."""
    allowed: bool
    """Within what the certification (DocMDP) and field locks (FieldMDP) of the document permit."""
    docmdp: str | None
    """The certification's permission: NO_CHANGES, FILL_FORMS or ANNOTATE; None if not certified."""
    locked_fields: list[str] | None
    """Fields this signature locks (FieldMDP); None if it locks nothing."""
    later_revisions: int
    pages_touched: list[int]
    """1-based numbers of pages added or whose objects changed after the signature."""
    fields_changed: list[str]
    detail: str | None = None


@dataclass(frozen=True)
class SignatureVerdict:
    id: str
    """The PDF field name, or ``signer-N`` in a CMS."""
    kind: str
    """``PAdES``, ``PDF`` (a PDF signature not PAdES), ``document timestamp``, ``CAdES`` or ``CMS``."""
    indication: Indication
    sub_indication: str | None
    reasons: list[str]
    signer: str
    signer_certificate: CertificateInfo | None
    claimed_signing_time: datetime | None
    """What the signer says (signing-time attribute or /M): not proof."""
    proven_signing_time: datetime | None
    """The earliest proof of existence: a valid timestamp, else the validation time."""
    level: str | None
    """The baseline level reached (B-B, B-T, B-LT, B-LTA), None if not a baseline signature."""
    digest_algorithm: str | None = None
    signature_algorithm: str | None = None
    chain: list[CertificateInfo] = field(default_factory=list)
    revocation: list[RevocationInfo] = field(default_factory=list)
    timestamps: list[TimestampInfo] = field(default_factory=list)
    modifications: Modifications | None = None

    @property
    def passed(self) -> bool:
        return self.indication is Indication.TOTAL_PASSED


@dataclass(frozen=True)
class ValidationPolicyInfo:
    trust_store: str
    trust_anchors: list[str]
    validation_time: datetime
    at_current_time: bool
    revocation_fetching: bool


@dataclass(frozen=True)
class ValidationReport:
    document: str
    """The file's name as given."""
    format: str
    """``PDF``, ``CMS`` or ``XML``."""
    sha256: str
    size: int
    policy: ValidationPolicyInfo
    signatures: list[SignatureVerdict]
    detached_content_sha256: str | None = None

    @property
    def indication(self) -> Indication:
        """The document's: TOTAL_PASSED if every signature passed, else the worst of them."""
        found = {s.indication for s in self.signatures}
        for worst in (Indication.TOTAL_FAILED, Indication.INDETERMINATE):
            if worst in found:
                return worst
        return Indication.TOTAL_PASSED if self.signatures else Indication.INDETERMINATE

    @property
    def passed(self) -> bool:
        return bool(self.signatures) and all(s.passed for s in self.signatures)

    def as_dict(self) -> dict[str, Any]:
        data = _plain(dataclasses.asdict(self))
        data["indication"] = self.indication.value
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value
