"""CMS signatures (CAdES and plain CMS), detached with their content or enveloping it: one verdict per signer."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from asn1crypto import cms, pem
from pyhanko.sign.validation import ades
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer import ltv
from signer.validation.capture import capturing
from signer.validation.errors import ContentRequired, NotSigned
from signer.validation.policy import with_local
from signer.validation.verdicts import ades_verdict, format_failure, from_error, signing_time
from signer.validation_report import Indication, SignatureVerdict


def _load_cms(data: bytes) -> cms.SignedData:
    if pem.detect(data):
        try:
            _, _, data = pem.unarmor(data)
        except ValueError as exc:
            raise NotSigned("not a signed document: a PEM file without a CMS") from exc
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise NotSigned("a CMS, but not a SignedData")
        signed_data = info["content"]
        signed_data["signer_infos"].native  # noqa: B018 - parse now: a truncated file fails here
        signed_data["encap_content_info"].native  # noqa: B018
    except NotSigned:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise NotSigned(f"not a signed document (neither a PDF nor a CMS signature): {type(exc).__name__}") from exc
    if not len(signed_data["signer_infos"]):
        raise NotSigned("the CMS carries no signature")
    return signed_data


def validate_cms(data: bytes, content: Path | None, spec: SignatureValidationSpec,
                 timing: ValidationTimingInfo) -> list[SignatureVerdict]:
    signed_data = _load_cms(data)
    embedded_content = signed_data["encap_content_info"]["content"]
    embedded_bytes = embedded_content.native if isinstance(embedded_content.native, bytes) else None
    if content is None and embedded_bytes is None:
        raise ContentRequired("a detached CMS signature is validated with its content: give it too")
    data_ = ltv.embedded_validation_data(signed_data)
    local_spec = with_local(spec, data_)
    embedded = data_.crls + data_.ocsps
    verdicts = []
    for n, signer_info in enumerate(signed_data["signer_infos"], start=1):
        one = signed_data.copy()  # pyHanko validates the first signer of a SignedData: one each
        one["signer_infos"] = cms.SignerInfos([signer_info.copy()])
        algorithm = signer_info["digest_algorithm"]["algorithm"].native
        ident = f"signer-{n}"
        try:
            # Enveloping: pyHanko digests the embedded content itself (and refuses a digest given beside it).
            digest = _content_digest(algorithm, content) if embedded_bytes is None and content is not None else None
        except ValueError:
            verdicts.append(format_failure(ident, "CMS", one, f"unsupported digest algorithm {algorithm}"))
            continue
        has_ts = any(a["type"].native == "signature_time_stamp_token" for a in signer_info["unsigned_attrs"] or [])
        with capturing() as captured:
            try:
                if has_ts:
                    result = asyncio.run(ades.ades_with_time_validation(one, local_spec, timing_info=timing,
                                                                        raw_digest=digest))
                else:
                    result = asyncio.run(ades.ades_basic_validation(one, local_spec, timing_info=timing,
                                                                    raw_digest=digest))
            except SignatureValidationError as exc:
                verdicts.append(from_error(ident, "CMS", one, exc))
                continue
        verdict = ades_verdict(ident, "CMS", one, result, timing, embedded, captured,
                               claimed=signing_time(signer_info))
        if verdict.level is not None:
            verdict = SignatureVerdict(**{**verdict.__dict__, "kind": "CAdES",
                                          "level": _cms_level(verdict, bool(embedded))})
        verdicts.append(verdict)
    return verdicts


def _content_digest(algorithm: str, content: Path) -> bytes:
    digest = hashlib.new(algorithm)
    with content.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def _cms_level(verdict: SignatureVerdict, has_revocation: bool) -> str:
    if not any(t.kind == "signature" and t.indication is Indication.TOTAL_PASSED for t in verdict.timestamps):
        return "B-B"
    if has_revocation and not any(r.source == "fetched" for r in verdict.revocation):
        return "B-LT"
    return "B-T"
