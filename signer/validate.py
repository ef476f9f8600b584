"""Validation of CAdES and PAdES signatures against given trust anchors (pyHanko)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asn1crypto import cms, x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature, async_validate_detached_cms
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator import ValidationContext

from signer.errors import InvalidDocument


@dataclass(frozen=True)
class SignatureReport:
    """What a validator says of one signature."""

    label: str
    signer: str
    intact: bool
    valid: bool
    trusted: bool
    signing_time: datetime | None
    coverage: str | None = None
    modification_level: str | None = None
    docmdp_ok: bool | None = None
    bottom_line: bool = False
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.bottom_line


def validation_context(
    trust_roots: Sequence[x509.Certificate], *, revocation_mode: str = "soft-fail", allow_fetching: bool = False
) -> ValidationContext:
    return ValidationContext(
        trust_roots=list(trust_roots), allow_fetching=allow_fetching, revocation_mode=revocation_mode
    )


def validate_cms(
    signature_der: bytes,
    trust_roots: Sequence[x509.Certificate],
    content: bytes | None = None,
) -> SignatureReport:
    """Validate a CAdES signature: detached when ``content`` is given, else enveloping."""
    try:
        info = cms.ContentInfo.load(signature_der)
        if info["content_type"].native != "signed_data":
            raise InvalidDocument("not a CMS SignedData")
        signed_data = info["content"]
        embedded = signed_data["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidDocument(f"not a CMS signature: {exc}") from None
    if content is None and embedded is None:
        raise InvalidDocument("a detached signature needs its content")
    context = validation_context(trust_roots)


    async def run() -> StandardCMSSignatureStatus:
        if content is not None:
            return await async_validate_detached_cms(content, signed_data, signer_validation_context=context)
        return await async_validate_cms_signature(
            signed_data, status_cls=StandardCMSSignatureStatus, validation_context=context
        )

    try:
        status = asyncio.run(run())
    except SignatureValidationError as exc:
        return SignatureReport("cms", "?", False, False, False, None, problem=exc.failure_message)
    cert = status.signing_cert
    return SignatureReport(
        label="cms",
        signer=cert.subject.human_friendly if cert else "?",
        intact=status.intact,
        valid=status.valid,
        trusted=status.trusted,
        signing_time=status.signer_reported_dt,
        bottom_line=bool(status.bottom_line),
    )


def validate_pdf(path: Path, trust_roots: Sequence[x509.Certificate]) -> list[SignatureReport]:
    """Validate every signature in a PDF, the difference analysis included."""
    context = validation_context(trust_roots)
    try:
        with path.open("rb") as fh:
            reader = PdfFileReader(fh, strict=False)
            if reader.encrypted:
                raise InvalidDocument("the PDF is encrypted")
            sigs = list(reader.embedded_signatures)
            if not sigs:
                raise InvalidDocument("the PDF carries no signature")
            return [_pdf_report(sig, context) for sig in sigs]
    except (PdfError, ValueError, IndexError, KeyError) as exc:
        raise InvalidDocument(f"not a readable PDF: {exc}") from None


def _pdf_report(sig: object, context: ValidationContext) -> SignatureReport:
    status = asyncio.run(async_validate_pdf_signature(sig, signer_validation_context=context))  # type: ignore[arg-type]
    cert = status.signing_cert
    level = status.modification_level
    return SignatureReport(
        label=sig.field_name,  # type: ignore[attr-defined]
        signer=cert.subject.human_friendly if cert else "?",
        intact=status.intact,
        valid=status.valid,
        trusted=status.trusted,
        signing_time=status.signer_reported_dt,
        coverage=status.coverage.name if status.coverage else None,
        modification_level=level.name if level else None,
        docmdp_ok=status.docmdp_ok,
        bottom_line=bool(status.bottom_line),
    )
