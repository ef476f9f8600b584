"""An XML signer's chain and timestamps, then the validation with time (EN 319 102-1 § 5.5).

pyhanko-certvalidator validates the chain to the trust anchors at the validation time, revocation in
hard-fail mode from the embedded data (fetching only when asked); pyHanko's ETSI timestamp procedure
validates each SignatureTimeStamp token (the TSA's signature, its chain, the message imprint).
pyHanko's validation with time takes a CMS SignerInfo, so its rule is applied here: a timestamp
before the revocation, or within the certificate's validity, cures REVOKED_NO_POE or OUT_OF_BOUNDS_NO_POE.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import cms, x509
from pyhanko.sign.ades.report import AdESIndeterminate, AdESPassed, AdESSubIndic
from pyhanko.sign.validation import ades, generic_cms
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec, bootstrap_validation_data_handlers
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer.validation.capture import capturing
from signer.validation.certificates import signer_cert
from signer.validation.indications import EXPLANATIONS, indication_of, try_later
from signer.validation.revocation import revocation_from, revocation_objects
from signer.validation.xml_signature import XmlSignature
from signer.validation_report import Indication, RevocationInfo, TimestampInfo

_CURED_BY_TIME = frozenset({AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE,
                            AdESIndeterminate.OUT_OF_BOUNDS_NO_POE})


@dataclass
class Outcome:
    sub: AdESSubIndic
    path: Any
    revocation_details: Any
    timestamps: list[TimestampInfo]
    poe: datetime | None
    revocation: list[RevocationInfo]
    failure: str | None = None


async def validate_with_time(sig: XmlSignature, spec: SignatureValidationSpec,
                             timing: ValidationTimingInfo) -> Outcome:
    assert sig.signing_cert is not None
    embedded = [*sig.embedded.crls, *sig.embedded.ocsps]
    async with ades._operation_scoped_spec(spec) as scoped:
        handlers = bootstrap_validation_data_handlers(spec=scoped, timing_info=timing)
        context = scoped.cert_validation_policy.build_validation_context(timing_info=timing, handlers=handlers)
        usage = StandardCMSSignatureStatus.default_usage_constraints(scoped.key_usage_settings)
        with capturing() as chain_capture:
            checked = await generic_cms.validate_cert_usage(
                sig.signing_cert, context, usage, context.path_builder.async_build_paths_lazy(sig.signing_cert))
        sub: AdESSubIndic = AdESPassed.OK if checked.success_result is not None else checked.error_subindic
        sub = try_later(sub, chain_capture.errors)
        timestamps, poe, ts_sub, revocation = [], None, None, revocation_from(context, embedded)
        for token, covered in sig.tokens:
            info, result = await _timestamp(token, covered, scoped, timing)
            timestamps.append(info)
            if result is not None:
                revocation += revocation_objects(result, embedded)
            if info.indication is Indication.TOTAL_PASSED and info.time is not None:
                poe = info.time if poe is None else min(poe, info.time)
            elif ts_sub is None:
                ts_sub = info
    path = checked.success_result or checked.error_path
    unique_revocation = list({r.sha256: r for r in revocation}.values())
    outcome = Outcome(sub, path, checked.revo_details, timestamps, poe, unique_revocation)
    if sub in _CURED_BY_TIME and poe is not None and _cured(sub, poe, sig.signing_cert, checked.revo_details):
        outcome.sub = AdESPassed.OK
    elif sub is AdESPassed.OK and poe is None and ts_sub is not None:
        # A timestamp that does not validate: what it claims to prove is not proven (as pyHanko does for CMS).
        named = getattr(AdESIndeterminate, ts_sub.sub_indication or "", None)
        outcome.sub = named if ts_sub.indication is Indication.INDETERMINATE and named else AdESIndeterminate.NO_POE
        outcome.failure = f"the signature timestamp does not validate: {ts_sub.reason or ts_sub.sub_indication}"
    return outcome


def _cured(sub: AdESSubIndic, poe: datetime, cert: x509.Certificate, details: Any) -> bool:
    if sub is AdESIndeterminate.OUT_OF_BOUNDS_NO_POE:
        validity = cert["tbs_certificate"]["validity"]
        return validity["not_before"].native <= poe <= validity["not_after"].native
    return details is not None and poe < details.revocation_date


async def _timestamp(token: cms.ContentInfo, covered: bytes, spec: SignatureValidationSpec,
                     timing: ValidationTimingInfo) -> tuple[TimestampInfo, Any]:
    signed_data = token["content"]
    tsa = _tsa_name(signed_data)
    try:
        gen_time = signed_data["encap_content_info"]["content"].parsed["gen_time"].native
    except (ValueError, KeyError, TypeError, AttributeError):
        gen_time = None

    def imprint(algorithm: str) -> bytes:
        return hashlib.new(algorithm, covered).digest()

    with capturing() as captured:
        try:
            result = await ades.ades_timestamp_validation(signed_data, spec, imprint, timing_info=timing)
        except (SignatureValidationError, ValueError) as exc:
            return TimestampInfo("signature", gen_time, tsa, Indication.TOTAL_FAILED, "FORMAT_FAILURE",
                                 f"the timestamp token cannot be validated: {exc}"[:300]), None
    sub = try_later(result.ades_subindic, captured.errors)
    status = result.api_status
    if status is not None and status.signing_cert is not None:
        tsa = status.signing_cert.subject.human_friendly
    when = status.timestamp if status is not None else gen_time
    if sub is AdESPassed.OK:
        return TimestampInfo("signature", when, tsa, Indication.TOTAL_PASSED), result
    reason = {"HASH_FAILURE": "the timestamp's message imprint is not that of the canonical SignatureValue",
              "SIG_CRYPTO_FAILURE": "the TSA's signature does not verify"}.get(
        sub.standard_name, f"the TSA's certificate does not validate to the trust store "
                           f"({EXPLANATIONS.get(sub.standard_name, sub.standard_name)})")
    return TimestampInfo("signature", when, tsa, indication_of(sub), sub.standard_name, reason), result


def _tsa_name(signed_data: cms.SignedData) -> str:
    cert = signer_cert(signed_data)
    return cert.subject.human_friendly if cert is not None else "?"
