"""PDF signatures (PAdES and others) and document timestamps, with what pyHanko leaves out of the
indication: a signature's coverage, the changes made after it, and the proof later document timestamps give."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asn1crypto import crl, ocsp
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESIndeterminate
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
from pyhanko.sign.validation import EmbeddedPdfSignature, ades
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec, SignatureValidationSpec
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer import ltv
from signer.errors import InvalidDocument, SignerError
from signer.validation.capture import capturing
from signer.validation.certificates import cert_info, signer_cert
from signer.validation.errors import EncryptedDocument, NotSigned
from signer.validation.pdf_modifications import modifications
from signer.validation.policy import ValidationOptions, legacy_context, with_local
from signer.validation.revocation import cms_revocation, revocation_from
from signer.validation.timestamps import doc_timestamp_info
from signer.validation.verdicts import ades_verdict, digest_name, format_failure, from_error
from signer.validation_report import Indication, SignatureVerdict, TimestampInfo

_CURABLE_BY_POE = frozenset({
    AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED, AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.NO_POE})


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """A malformed file makes the parser raise anything: that is the document's fault."""
    try:
        yield
    except (SignerError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the parser's errors are many and unlisted
        raise InvalidDocument(f"{what}: {type(exc).__name__}: {exc}"[:200]) from exc


def validate_pdf(path: Path, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
                 options: ValidationOptions) -> list[SignatureVerdict]:
    with path.open("rb") as fh:
        with _reading("not a readable PDF"):
            reader = PdfFileReader(fh, strict=False)
            encrypted = reader.encrypted
        if encrypted:
            raise EncryptedDocument("the PDF is encrypted; only unencrypted signed PDFs can be validated")
        with _reading("cannot read this PDF's signatures"):
            signatures = list(reader.embedded_signatures)
            data = _dss_data(reader)
        if not signatures:
            raise NotSigned("the PDF carries no signature")
        doc_timestamps = [s for s in signatures if s.sig_object_type == "/DocTimeStamp"]
        local_spec = with_local(spec, data)
        verdicts = []
        for sig in signatures:
            verdicts.append(_pdf_verdict(sig, reader, local_spec, timing, options, data, doc_timestamps))
        return verdicts


def _dss_data(reader: PdfFileReader) -> ltv.ValidationData:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return ltv.ValidationData([], [], [])
    return ltv.ValidationData(
        list(dss.load_certs()),
        [crl.CertificateList.load(c.get_object().read_data(DecodePurpose.CRL)) for c in dss.crls],
        [ocsp.OCSPResponse.load(o.get_object().read_data(DecodePurpose.OCSP_RESPONSE)) for o in dss.ocsps])


def _pdf_verdict(sig: EmbeddedPdfSignature, reader: PdfFileReader, spec: SignatureValidationSpec,
                 timing: ValidationTimingInfo, options: ValidationOptions, dss: ltv.ValidationData,
                 doc_timestamps: Sequence[EmbeddedPdfSignature]) -> SignatureVerdict:
    ident = str(sig.field_name)
    try:
        sig.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)
    except Exception as exc:  # noqa: BLE001 - a byte range or structure the parser rejects
        return format_failure(ident, "PDF", sig.signed_data, f"the signature's structure is unusable: {exc}"[:200])
    embedded = dss.crls + dss.ocsps + cms_revocation(sig.signed_data)
    if sig.sig_object_type == "/DocTimeStamp":
        return _doc_timestamp_verdict(sig, options, dss, timing, embedded)
    later_dts = [d for d in doc_timestamps if d.signed_revision > sig.signed_revision]
    has_sig_ts = any(a["type"].native == "signature_time_stamp_token"
                     for a in sig.signer_info["unsigned_attrs"] or [])
    with capturing() as captured:
        try:
            digest = sig.compute_digest()
            if has_sig_ts:
                result = asyncio.run(ades.ades_with_time_validation(sig.signed_data, spec, timing_info=timing,
                                                                    raw_digest=digest))
            else:
                result = asyncio.run(ades.ades_basic_validation(sig.signed_data, spec, timing_info=timing,
                                                                raw_digest=digest))
            if later_dts and result.ades_subindic in _CURABLE_BY_POE:
                # Document timestamps may prove the signature existed while its certificate was good.
                captured.messages.clear()
                result = asyncio.run(ades.ades_lta_validation(sig, PdfSignatureValidationSpec(spec),
                                                              timing_info=timing))
        except SignatureValidationError as exc:
            return from_error(ident, "PDF", sig.signed_data, exc)
    kind = "PAdES" if sig.sig_object.get("/SubFilter") == "/ETSI.CAdES.detached" else "PDF"
    verdict = ades_verdict(ident, kind, sig.signed_data, result, timing, embedded, captured,
                           claimed=sig.self_reported_timestamp)
    mods = modifications(sig, reader)
    timestamps = verdict.timestamps + [doc_timestamp_info(d, options, dss, timing) for d in later_dts]
    level = _pdf_level(verdict, sig, dss, timestamps)
    indication, sub, reasons = verdict.indication, verdict.sub_indication, list(verdict.reasons)
    coverage = sig.coverage
    if indication is Indication.TOTAL_PASSED and coverage is not None and \
            coverage < SignatureCoverageLevel.ENTIRE_REVISION:
        indication, sub = Indication.TOTAL_FAILED, "FORMAT_FAILURE"
        reasons.append("the signature does not cover its whole revision of the PDF")
    elif indication is Indication.TOTAL_PASSED and not mods.allowed:
        indication, sub = Indication.INDETERMINATE, "SIG_CONSTRAINTS_FAILURE"
        reasons.append("the PDF was changed after this signature beyond what its certification and field locks "
                       f"permit ({mods.level}{': ' + mods.detail if mods.detail else ''})")
    return SignatureVerdict(**{**verdict.__dict__, "indication": indication, "sub_indication": sub,
                               "reasons": reasons, "modifications": mods, "timestamps": timestamps, "level": level})


def _doc_timestamp_verdict(sig: EmbeddedPdfSignature, options: ValidationOptions, dss: ltv.ValidationData,
                           timing: ValidationTimingInfo, embedded: list[Any]) -> SignatureVerdict:
    info = doc_timestamp_info(sig, options, dss, timing)
    status = sig.signer_cert if signer_cert(sig.signed_data) is not None else None
    context = legacy_context(options, dss, None if not timing.point_in_time_validation else timing.validation_time)
    chain = [cert_info(status)] if status is not None else []  # the legacy API keeps no path: the TSA stands for it
    return SignatureVerdict(
        id=str(sig.field_name), kind="document timestamp", indication=info.indication,
        sub_indication=info.sub_indication, reasons=[info.reason] if info.reason else [], signer=info.tsa,
        signer_certificate=cert_info(status) if status else None, claimed_signing_time=info.time,
        proven_signing_time=info.time if info.indication is Indication.TOTAL_PASSED else None, level=None,
        digest_algorithm=digest_name(sig.signed_data), chain=chain, timestamps=[info],
        revocation=revocation_from(context, embedded))


def _pdf_level(verdict: SignatureVerdict, sig: EmbeddedPdfSignature, dss: ltv.ValidationData,
               timestamps: list[TimestampInfo]) -> str | None:
    if verdict.level is None:
        return None
    good = [t for t in timestamps if t.indication is Indication.TOTAL_PASSED]
    if not good:
        return "B-B"
    if not (dss.crls or dss.ocsps) or any(r.source == "fetched" for r in verdict.revocation):
        return "B-T"
    dss_revision = _dss_revision(sig.reader)
    after_dss = [t for t in good if t.kind == "document"]
    if dss_revision is not None and after_dss and any(
            d.signed_revision >= dss_revision for d in sig.reader.embedded_timestamp_signatures):
        return "B-LTA"
    return "B-LT"


def _dss_revision(reader: PdfFileReader) -> int | None:
    try:
        ref = reader.root.raw_get("/DSS")
    except KeyError:
        return None
    if isinstance(ref, generic.IndirectObject):
        return reader.xrefs.get_introducing_revision(ref.reference)
    return reader.xrefs.total_revisions - 1
