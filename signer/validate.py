"""Validation of CAdES and PAdES signatures against given trust anchors (pyHanko)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asn1crypto import cms, x509
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.generic_cms import (
    async_validate_cms_signature,
    async_validate_detached_cms,
    collect_timing_info,
)
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator import ValidationContext

from signer import ltv
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
    timestamp: datetime | None = None
    """The time a valid signature timestamp (or a document timestamp) vouches for."""
    revocation_checked: bool = False
    """Validated with hard-fail revocation checking from the embedded data alone, fetching off."""

    @property
    def ok(self) -> bool:
        return self.bottom_line


def validation_context(
    trust_roots: Sequence[x509.Certificate], *, revocation_mode: str = "soft-fail", allow_fetching: bool = False
) -> ValidationContext:
    return ValidationContext(
        trust_roots=list(trust_roots), allow_fetching=allow_fetching, revocation_mode=revocation_mode
    )


def offline_context(trust_roots: Sequence[x509.Certificate], data: ltv.ValidationData) -> ValidationContext:
    """Hard-fail revocation checking from the given data alone: nothing is fetched."""
    return ValidationContext(trust_roots=list(trust_roots), other_certs=data.certificates, crls=data.crls,
                             ocsps=data.ocsps, allow_fetching=False, revocation_mode="hard-fail")


def validate_cms(
    signature_der: bytes,
    trust_roots: Sequence[x509.Certificate],
    content: bytes | None = None,
    *,
    long_term: bool = False,
) -> SignatureReport:
    """Validate a CAdES signature: detached when ``content`` is given, else enveloping.

    ``long_term`` validates from the embedded certificates and revocation values alone, with
    revocation checking in hard-fail mode (CAdES B-LT).
    """
    try:
        info = cms.ContentInfo.load(signature_der)
        if info["content_type"].native != "signed_data":
            raise InvalidDocument("not a CMS SignedData")
        signed_data = info["content"]
        embedded = signed_data["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidDocument(f"not a CMS signature: {exc}") from exc
    if content is None and embedded is None:
        raise InvalidDocument("a detached signature needs its content")
    if long_term:
        context = offline_context(trust_roots, ltv.embedded_validation_data(signed_data))
    else:
        context = validation_context(trust_roots)

    async def run() -> StandardCMSSignatureStatus:
        if content is not None:
            return await async_validate_detached_cms(content, signed_data, signer_validation_context=context,
                                                     ts_validation_context=context)
        timing = await collect_timing_info(signed_data["signer_infos"][0], ts_validation_context=context,
                                           raw_digest=lambda name: hashlib.new(name, embedded).digest())
        return await async_validate_cms_signature(signed_data, status_cls=StandardCMSSignatureStatus,
                                                  validation_context=context, status_kwargs=timing)

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
        bottom_line=bool(status.bottom_line) and _timestamp_ok(status),
        timestamp=_timestamp_time(status),
        revocation_checked=long_term,
    )


def _timestamp_ok(status: object) -> bool:
    ts = getattr(status, "timestamp_validity", None)
    return ts is None or bool(ts.valid and ts.intact and ts.trusted)


def _timestamp_time(status: object) -> datetime | None:
    ts = getattr(status, "timestamp_validity", None)
    return ts.timestamp if ts is not None and ts.valid else None


def validate_pdf(path: Path, trust_roots: Sequence[x509.Certificate], *, long_term: bool = False) -> list[SignatureReport]:
    """Validate every signature (and document timestamp) in a PDF, the difference analysis included.

    ``long_term`` validates from the document's DSS and the signatures' own certificates alone,
    with revocation checking in hard-fail mode and fetching off (PAdES B-LT and B-LTA).
    """
    try:
        with path.open("rb") as fh:
            reader = PdfFileReader(fh, strict=False)
            if reader.encrypted:
                raise InvalidDocument("the PDF is encrypted")
            sigs = list(reader.embedded_signatures)
            if not sigs:
                raise InvalidDocument("the PDF carries no signature")
            if long_term:
                dss = DocumentSecurityStore.read_dss(reader)
                context = dss.as_validation_context({"trust_roots": list(trust_roots), "allow_fetching": False,
                                                     "revocation_mode": "hard-fail"})
            else:
                context = validation_context(trust_roots)
            return [_pdf_report(sig, context, long_term) for sig in sigs]
    except (PdfError, ValueError, IndexError, KeyError) as exc:
        raise InvalidDocument(f"not a readable PDF: {exc}") from exc


def _pdf_report(sig: object, context: ValidationContext, long_term: bool) -> SignatureReport:
    if getattr(sig, "sig_object_type", None) == "/DocTimeStamp":
        ts = asyncio.run(async_validate_pdf_timestamp(sig, validation_context=context))  # type: ignore[arg-type]
        return SignatureReport(
            label=sig.field_name, signer=ts.signing_cert.subject.human_friendly if ts.signing_cert else "?",  # type: ignore[attr-defined]
            intact=ts.intact, valid=ts.valid, trusted=ts.trusted, signing_time=ts.timestamp,
            coverage=ts.coverage.name if ts.coverage else None, bottom_line=bool(ts.intact and ts.valid and ts.trusted),
            timestamp=ts.timestamp, revocation_checked=long_term)
    status = asyncio.run(async_validate_pdf_signature(  # type: ignore[arg-type]
        sig, signer_validation_context=context, ts_validation_context=context))
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
        bottom_line=bool(status.bottom_line) and _timestamp_ok(status),
        timestamp=_timestamp_time(status),
        revocation_checked=long_term,
    )
