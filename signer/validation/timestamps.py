"""The timestamps behind a signature in the report: a CMS signer's signature and content timestamps,
a PDF's document timestamps."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from asn1crypto import cms
from pyhanko.sign.validation import EmbeddedPdfSignature, async_validate_pdf_timestamp
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer import ltv
from signer.validation.certificates import signer_cert
from signer.validation.indications import classic_indication
from signer.validation.policy import ValidationOptions, legacy_context
from signer.validation_report import Indication, TimestampInfo


def signature_timestamps(status: Any, signed_data: cms.SignedData) -> list[TimestampInfo]:
    """What pyHanko's ``status`` says of each timestamp the first signer carries; unvalidated ones too."""
    out = []
    signer_info = signed_data["signer_infos"][0]
    for attr_name, kind, field in (("signature_time_stamp_token", "signature", "timestamp_validity"),
                                   ("content_time_stamp", "content", "content_timestamp_validity")):
        attrs = signer_info["unsigned_attrs" if kind == "signature" else "signed_attrs"] or []
        if not any(a["type"].native == attr_name for a in attrs):
            continue
        ts = getattr(status, field, None) if status is not None else None
        if ts is None:
            out.append(TimestampInfo(kind, _token_time(attrs, attr_name), _token_tsa(attrs, attr_name),
                                     Indication.INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND",
                                     "the timestamp did not validate (its TSA is not trusted, or its data is "
                                     "incomplete)"))
            continue
        indication, sub, reason = classic_indication(ts)
        tsa = ts.signing_cert.subject.human_friendly if ts.signing_cert else "?"
        out.append(TimestampInfo(kind, ts.timestamp, tsa, indication, sub, reason))
    return out


def _token(attrs: Any, name: str) -> cms.ContentInfo | None:
    for attr in attrs:
        if attr["type"].native == name:
            return attr["values"][0]
    return None


def _token_time(attrs: Any, name: str) -> datetime | None:
    try:
        token = _token(attrs, name)
        return token["content"]["encap_content_info"]["content"].parsed["gen_time"].native if token else None
    except (ValueError, KeyError, TypeError):
        return None


def _token_tsa(attrs: Any, name: str) -> str:
    try:
        token = _token(attrs, name)
        cert = signer_cert(token["content"]) if token else None
        return cert.subject.human_friendly if cert else "?"
    except (ValueError, KeyError, TypeError):
        return "?"


def doc_timestamp_info(sig: EmbeddedPdfSignature, options: ValidationOptions, dss: ltv.ValidationData,
                       timing: ValidationTimingInfo) -> TimestampInfo:
    context = legacy_context(options, dss, timing.validation_time if timing.point_in_time_validation else None)
    try:
        status = asyncio.run(async_validate_pdf_timestamp(sig, validation_context=context))
    except SignatureValidationError as exc:
        return TimestampInfo("document", None, "?", Indication.TOTAL_FAILED,
                             (exc.ades_subindication.standard_name if exc.ades_subindication else "FORMAT_FAILURE"),
                             exc.failure_message)
    tsa = status.signing_cert.subject.human_friendly if status.signing_cert else "?"
    indication, sub, reason = classic_indication(status)
    if indication is Indication.TOTAL_PASSED and not (getattr(status, "coverage", None) is None or
                                                      status.coverage >= SignatureCoverageLevel.ENTIRE_REVISION):
        indication, sub, reason = Indication.TOTAL_FAILED, "FORMAT_FAILURE", "it does not cover its revision"
    return TimestampInfo("document", status.timestamp, tsa, indication, sub, reason)
