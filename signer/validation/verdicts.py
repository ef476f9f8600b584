"""A CMS signer's verdict from pyHanko's AdES result, its error, or a signature too malformed to validate."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from asn1crypto import cms, x509
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer.validation.capture import Captured
from signer.validation.certificates import cert_info, chain_problem, embedded_certs, signer_cert
from signer.validation.indications import EXPLANATIONS, indication_of, plain_message, try_later, unique
from signer.validation.revocation import revocation_objects
from signer.validation.timestamps import signature_timestamps
from signer.validation_report import Indication, SignatureVerdict


def ades_verdict(ident: str, kind: str, signed_data: cms.SignedData, result: Any, timing: ValidationTimingInfo,
                 embedded: list[Any], captured: Captured, *, claimed: datetime | None) -> SignatureVerdict:
    sub = try_later(result.ades_subindic, captured.errors)
    status = result.api_status
    indication = indication_of(sub)
    sub_name = None if sub is AdESPassed.OK else sub.standard_name
    cert = status.signing_cert if status is not None else signer_cert(signed_data)
    path = status.validation_path if status is not None else None
    reasons = []
    if sub_name:
        reasons.append(EXPLANATIONS.get(sub_name, sub_name))
        reasons.extend(_details(sub_name, status, cert, signed_data, timing))
    if indication is not Indication.TOTAL_PASSED:
        if result.failure_msg:
            reasons.append(str(result.failure_msg)[:300])
        reasons.extend(plain_message(m) for m in captured.messages)
    timestamps = signature_timestamps(status, signed_data)
    if indication is Indication.TOTAL_PASSED and any(t.kind == "signature" and t.indication
                                                     is not Indication.TOTAL_PASSED for t in timestamps):
        indication, sub_name = Indication.INDETERMINATE, "NO_POE"
        reasons.append("the signature timestamp does not validate")
    best = getattr(result, "best_signature_time", None)
    proven = best if best is not None and best < timing.validation_time - timedelta(seconds=1) else None
    revocation = revocation_objects(result, embedded)
    signer_attrs = {a["type"].native for a in signed_data["signer_infos"][0]["signed_attrs"] or []}
    baseline = "B-B" if signer_attrs & {"signing_certificate", "signing_certificate_v2"} else None
    chain = [cert_info(c, anchor=(i == 0)) for i, c in enumerate(path.iter_certs(include_root=True))] \
        if path is not None else [cert_info(c) for c in embedded_certs(signed_data)]
    return SignatureVerdict(
        id=ident, kind=kind, indication=indication, sub_indication=sub_name, reasons=unique(reasons),
        signer=cert.subject.human_friendly if cert is not None else "?",
        signer_certificate=cert_info(cert) if cert is not None else None, claimed_signing_time=claimed,
        proven_signing_time=proven, level=baseline, digest_algorithm=digest_name(signed_data),
        signature_algorithm=signed_data["signer_infos"][0]["signature_algorithm"].signature_algo,
        chain=chain, revocation=revocation, timestamps=timestamps)


def _details(sub: str, status: Any, cert: x509.Certificate | None, signed_data: cms.SignedData,
             timing: ValidationTimingInfo) -> list[str]:
    out = []
    details = getattr(status, "revocation_details", None)
    if details is not None and sub in ("REVOKED", "REVOKED_NO_POE", "REVOKED_CA_NO_POE"):
        out.append(f"revoked on {details.revocation_date.isoformat()} ({details.revocation_reason.native})")
    if cert is not None and sub in ("OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED", "EXPIRED", "NOT_YET_VALID"):
        validity = cert["tbs_certificate"]["validity"]
        out.append(f"the certificate is valid from {validity['not_before'].native.isoformat()} to "
                   f"{validity['not_after'].native.isoformat()}; validation time "
                   f"{timing.validation_time.isoformat(timespec='seconds')}")
    if cert is not None and sub == "NO_CERTIFICATE_CHAIN_FOUND":
        out.append(chain_problem(cert, embedded_certs(signed_data)))
    return out


def format_failure(ident: str, kind: str, signed_data: cms.SignedData, reason: str) -> SignatureVerdict:
    cert = signer_cert(signed_data)
    return SignatureVerdict(
        id=ident, kind=kind, indication=Indication.TOTAL_FAILED, sub_indication="FORMAT_FAILURE",
        reasons=[EXPLANATIONS["FORMAT_FAILURE"], reason], signer=cert.subject.human_friendly if cert else "?",
        signer_certificate=cert_info(cert) if cert else None, claimed_signing_time=None,
        proven_signing_time=None, level=None, digest_algorithm=digest_name(signed_data))


def from_error(ident: str, kind: str, signed_data: cms.SignedData, exc: SignatureValidationError
               ) -> SignatureVerdict:
    sub = exc.ades_subindication
    if sub is None:
        return format_failure(ident, kind, signed_data, exc.failure_message)
    cert = signer_cert(signed_data)
    return SignatureVerdict(
        id=ident, kind=kind, indication=indication_of(sub), sub_indication=sub.standard_name,
        reasons=[EXPLANATIONS.get(sub.standard_name, sub.standard_name), exc.failure_message[:300]],
        signer=cert.subject.human_friendly if cert else "?", signer_certificate=cert_info(cert) if cert else None,
        claimed_signing_time=signing_time(signed_data["signer_infos"][0]), proven_signing_time=None, level=None,
        digest_algorithm=digest_name(signed_data))


def digest_name(signed_data: cms.SignedData) -> str | None:
    try:
        return signed_data["signer_infos"][0]["digest_algorithm"]["algorithm"].native
    except (ValueError, KeyError, IndexError):
        return None


def signing_time(signer_info: cms.SignerInfo) -> datetime | None:
    for attr in signer_info["signed_attrs"] or []:
        if attr["type"].native == "signing_time":
            return attr["values"][0].native
    return None
