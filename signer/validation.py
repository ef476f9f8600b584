"""One validation core for any signed document: PDF (PAdES, other PDF signatures, document
timestamps), CMS (CAdES, detached or enveloping) and XML (XAdES, XMLDSig: ``signer.xades_validation``),
made by kyso or by anyone else.

The verdict of each signature follows ETSI EN 319 102-1 through pyHanko's AdES procedures: the
basic validation for a signature without a timestamp, validation with time when a signature
timestamp gives a proof of existence, the long-term procedure for a PDF with document timestamps.
Revocation data is required for every certificate of a chain (hard-fail): taken from the document
(DSS, CMS ``crls``), else fetched when the caller allows it, else the answer is TRY_LATER.
What pyHanko knows but does not fold into the indication (PDF changes after signing, a
signature's coverage) is applied here, as EU DSS does. Nothing here touches the HSM or a database.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from asn1crypto import cms, crl, ocsp, pem, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESIndeterminate, AdESPassed, AdESStatus, AdESSubIndic
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel, SuspiciousModification
from pyhanko.sign.validation import EmbeddedPdfSignature, ades, async_validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.poe import ValidationObjectType
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import REQUIRE_REVINFO, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from signer import ltv
from signer.errors import InvalidDocument, SignerError
from signer.validation_report import (
    CertificateInfo,
    Indication,
    Modifications,
    RevocationInfo,
    SignatureVerdict,
    TimestampInfo,
    ValidationPolicyInfo,
    ValidationReport,
)


class NotSigned(InvalidDocument):
    code = "not_signed"


class EncryptedDocument(InvalidDocument):
    code = "encrypted_document"


class ContentRequired(InvalidDocument):
    """A detached CMS signature given without the content it signs."""

    code = "content_required"
    status = 400  # the request lacks a part: not a document kyso cannot process


class UnsupportedFormat(InvalidDocument):
    code = "unsupported_format"


class InvalidTrustStore(SignerError):
    code = "invalid_trust_store"


# -- trust --------------------------------------------------------------------------------------------

_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


@dataclass(frozen=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...]
    source: str
    """Where the anchors came from, for the report."""


def parse_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, or one DER certificate."""
    try:
        if pem.detect(data):
            return [x509.Certificate.load(der) for kind, _, der in pem.unarmor(data, multiple=True)
                    if kind == "CERTIFICATE"]
        cert = x509.Certificate.load(data)
        cert.native  # noqa: B018 - parse it all now, not halfway through a validation
        return [cert]
    except (ValueError, TypeError) as exc:
        raise InvalidTrustStore(f"{where} holds no readable certificate: {type(exc).__name__}") from exc


def load_trust_store(*paths: Path) -> TrustStore:
    """Anchors from PEM or DER files, or directories of them (``*.pem``, ``*.crt``, ``*.cer``, ``*.der``)."""
    anchors: dict[bytes, x509.Certificate] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _CERT_SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise InvalidTrustStore(f"no such trust store: {path}")
        for file in files:
            for cert in parse_certificates(file.read_bytes(), str(file)):
                anchors.setdefault(cert.sha256, cert)
    if not anchors:
        raise InvalidTrustStore(f"no certificate in the trust store {', '.join(map(str, paths))}")
    return TrustStore(tuple(anchors.values()), ", ".join(str(p) for p in paths))


def trust_store_of(certificates: Iterable[x509.Certificate], source: str) -> TrustStore:
    return TrustStore(tuple({c.sha256: c for c in certificates}.values()), source)


@dataclass(frozen=True)
class ValidationOptions:
    trust: TrustStore
    at: datetime | None = None
    """Validate as at this time; None: now."""
    fetch_revocation: bool = False
    """Fetch OCSP responses and CRLs named in the certificates when the document lacks them."""


# -- entry point ----------------------------------------------------------------------------------------

PDF_MAGIC_WINDOW = 1024
"""Readers accept a PDF header within the first kilobyte."""


def validate_file(path: Path, options: ValidationOptions, *, content: Path | None = None,
                  name: str | None = None) -> ValidationReport:
    """Validate every signature of the signed file at ``path``; ``content``: a detached CMS's content."""
    sha256, size = _file_digest(path, "sha256")
    with path.open("rb") as fh:
        head = fh.read(PDF_MAGIC_WINDOW)
    now = options.at or datetime.now(timezone.utc)
    policy = ValidationPolicyInfo(
        trust_store=options.trust.source,
        trust_anchors=[c.subject.human_friendly for c in options.trust.anchors],
        validation_time=now, at_current_time=options.at is None, revocation_fetching=options.fetch_revocation)
    timing = ValidationTimingInfo(validation_time=now, best_signature_time=now,
                                  point_in_time_validation=options.at is not None)
    spec = _signature_spec(options)
    if size == 0:
        raise NotSigned("the file is empty")
    if b"%PDF-" in head:
        fmt, verdicts, content_sha = "PDF", _validate_pdf(path, spec, timing, options), None
    elif looks_like_xml(head):
        fmt, content_sha = "XML", None
        verdicts = _validate_xml(path, spec, timing, options)
    else:
        fmt = "CMS"
        content_sha = _file_digest(content, "sha256")[0] if content is not None else None
        verdicts = _validate_cms(path.read_bytes(), content, spec, timing)
    return ValidationReport(document=name or path.name, format=fmt, sha256=sha256, size=size, policy=policy,
                            signatures=verdicts, detached_content_sha256=content_sha)


def looks_like_xml(head: bytes) -> bool:
    """XML starts with ``<`` (``<?xml`` or the root element), maybe after a byte order mark and blanks."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16: drop the zero halves to see the first character
        head = head[2:].replace(b"\0", b"")
    return head.lstrip()[:1] == b"<"


def _validate_xml(path: Path, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
                  options: ValidationOptions) -> list[SignatureVerdict]:
    """XMLDSig and XAdES (``signer.xades_validation``), with the same policy and timing as PDF and CMS."""
    from signer import xades_validation

    return xades_validation.validate(path.read_bytes(), spec, timing, options)


def _file_digest(path: Path, algorithm: str) -> tuple[str, int]:
    digest, size = hashlib.new(algorithm), 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# -- policy -----------------------------------------------------------------------------------------------

def _signature_spec(options: ValidationOptions, local: LocalKnowledge | None = None) -> SignatureValidationSpec:
    cert_policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=list(options.trust.anchors)),
        revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO))
    # Certificates are never fetched from URLs a document names: a chain comes with it or from the store.
    gathering = RevocationInfoGatheringSpec(
        online_fetching_rule=RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH if options.fetch_revocation
        else RevinfoOnlineFetchingRule.LOCAL_ONLY,
        certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH)
    return SignatureValidationSpec(cert_validation_policy=cert_policy, revinfo_gathering_policy=gathering,
                                   local_knowledge=local or LocalKnowledge())


def _with_local(spec: SignatureValidationSpec, data: ltv.ValidationData) -> SignatureValidationSpec:
    local = LocalKnowledge(known_certs=list(data.certificates),
                           known_crls=[CRLContainer(c) for c in data.crls],
                           known_ocsps=[OCSPContainer(o) for o in data.ocsps])
    return SignatureValidationSpec(cert_validation_policy=spec.cert_validation_policy,
                                   revinfo_gathering_policy=spec.revinfo_gathering_policy, local_knowledge=local)


def _legacy_context(options: ValidationOptions, data: ltv.ValidationData, moment: datetime | None
                    ) -> ValidationContext:
    return ValidationContext(trust_roots=list(options.trust.anchors), other_certs=data.certificates,
                             crls=data.crls, ocsps=data.ocsps, allow_fetching=options.fetch_revocation,
                             revocation_mode="hard-fail", moment=moment)


# -- PDF ------------------------------------------------------------------------------------------------------

class _Captured(logging.Handler):
    """pyHanko's warnings in this thread during one validation: the why behind a sub-indication."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []
        self.errors: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        self.messages.append(record.getMessage()[:300])
        if record.exc_info and record.exc_info[0] is not None:
            self.errors.add(record.exc_info[0].__name__)


@contextmanager
def _capturing() -> Iterator[_Captured]:
    handler = _Captured()
    loggers = [logging.getLogger(name) for name in ("pyhanko", "pyhanko_certvalidator")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """A malformed file makes the parser raise anything: that is the document's fault."""
    try:
        yield
    except (SignerError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the parser's errors are many and unlisted
        raise InvalidDocument(f"{what}: {type(exc).__name__}: {exc}"[:200]) from exc


def _validate_pdf(path: Path, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
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
        local_spec = _with_local(spec, data)
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
        return _format_failure(ident, "PDF", sig.signed_data, f"the signature's structure is unusable: {exc}"[:200])
    embedded = dss.crls + dss.ocsps + _cms_revocation(sig.signed_data)
    if sig.sig_object_type == "/DocTimeStamp":
        return _doc_timestamp_verdict(sig, options, dss, timing, embedded)
    later_dts = [d for d in doc_timestamps if d.signed_revision > sig.signed_revision]
    has_sig_ts = any(a["type"].native == "signature_time_stamp_token"
                     for a in sig.signer_info["unsigned_attrs"] or [])
    with _capturing() as captured:
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
            return _from_error(ident, "PDF", sig.signed_data, exc)
    kind = "PAdES" if sig.sig_object.get("/SubFilter") == "/ETSI.CAdES.detached" else "PDF"
    verdict = _verdict(ident, kind, sig.signed_data, result, timing, embedded, captured,
                       claimed=sig.self_reported_timestamp)
    mods = _modifications(sig, reader)
    timestamps = verdict.timestamps + [_doc_timestamp_info(d, options, dss, timing) for d in later_dts]
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


_CURABLE_BY_POE = frozenset({
    AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE, AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED, AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.NO_POE})


def _doc_timestamp_verdict(sig: EmbeddedPdfSignature, options: ValidationOptions, dss: ltv.ValidationData,
                           timing: ValidationTimingInfo, embedded: list[Any]) -> SignatureVerdict:
    info = _doc_timestamp_info(sig, options, dss, timing)
    status = sig.signer_cert if _has_cert(sig.signed_data) else None
    context = _legacy_context(options, dss, None if not timing.point_in_time_validation else timing.validation_time)
    chain = _chain_from_context(status, context)
    return SignatureVerdict(
        id=str(sig.field_name), kind="document timestamp", indication=info.indication,
        sub_indication=info.sub_indication, reasons=[info.reason] if info.reason else [], signer=info.tsa,
        signer_certificate=_cert_info(status, options) if status else None, claimed_signing_time=info.time,
        proven_signing_time=info.time if info.indication is Indication.TOTAL_PASSED else None, level=None,
        digest_algorithm=_digest_name(sig.signed_data), chain=chain, timestamps=[info],
        revocation=_revocation_from(context, embedded))


def _doc_timestamp_info(sig: EmbeddedPdfSignature, options: ValidationOptions, dss: ltv.ValidationData,
                        timing: ValidationTimingInfo) -> TimestampInfo:
    context = _legacy_context(options, dss, timing.validation_time if timing.point_in_time_validation else None)
    try:
        status = asyncio.run(async_validate_pdf_timestamp(sig, validation_context=context))
    except SignatureValidationError as exc:
        return TimestampInfo("document", None, "?", Indication.TOTAL_FAILED,
                             (exc.ades_subindication.standard_name if exc.ades_subindication else "FORMAT_FAILURE"),
                             exc.failure_message)
    tsa = status.signing_cert.subject.human_friendly if status.signing_cert else "?"
    indication, sub, reason = _classic_indication(status)
    if indication is Indication.TOTAL_PASSED and not (getattr(status, "coverage", None) is None or
                                                      status.coverage >= SignatureCoverageLevel.ENTIRE_REVISION):
        indication, sub, reason = Indication.TOTAL_FAILED, "FORMAT_FAILURE", "it does not cover its revision"
    return TimestampInfo("document", status.timestamp, tsa, indication, sub, reason)


def _classic_indication(status: Any) -> tuple[Indication, str | None, str | None]:
    if not status.intact:
        return Indication.TOTAL_FAILED, "HASH_FAILURE", "the timestamped data does not match its imprint"
    if not status.valid:
        return Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE", "the TSA's signature does not verify"
    if not status.trusted:
        sub = status.trust_problem_indic.standard_name if status.trust_problem_indic else "NO_CERTIFICATE_CHAIN_FOUND"
        return (Indication.TOTAL_FAILED if sub == "REVOKED" else Indication.INDETERMINATE, sub,
                f"the TSA's certificate does not validate to the trust store ({EXPLANATIONS.get(sub, sub)})")
    return Indication.TOTAL_PASSED, None, None


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


def _modifications(sig: EmbeddedPdfSignature, reader: PdfFileReader) -> Modifications:
    diff = sig.diff_result
    docmdp = sig.docmdp_level
    fieldmdp = sig.fieldmdp
    later = reader.xrefs.total_revisions - 1 - sig.signed_revision
    if isinstance(diff, SuspiciousModification):
        level, changed, detail = ModificationLevel.OTHER, [], str(diff)[:300]
    elif diff is not None:
        level, changed, detail = diff.modification_level, sorted(diff.changed_form_fields), None
    else:
        level, changed, detail = ModificationLevel.NONE, [], None
    allowed = not (level is ModificationLevel.OTHER or (docmdp is not None and level.value > docmdp.value))
    locked = None
    if fieldmdp is not None:
        locked = list(fieldmdp.fields or []) if fieldmdp.action.name != "ALL" else ["(all fields)"]
    try:
        pages = _pages_touched(reader, sig.signed_revision)
    except Exception:  # noqa: BLE001 - a page tree too odd to walk: the level above still stands
        pages = []
    return Modifications(level=level.name, allowed=allowed, docmdp=docmdp.name if docmdp else None,
                         locked_fields=locked, later_revisions=later, pages_touched=pages, fields_changed=changed,
                         detail=detail)


MAX_PAGES_WALKED = 10_000


def _page_refs(resolver: Any) -> list[generic.Reference]:
    """The page objects' references in order, walking /Kids without recursion and with a bound."""
    root = resolver.root if hasattr(resolver, "root") else resolver.trailer_view["/Root"]
    pages_ref = root.raw_get("/Pages")
    out: list[generic.Reference] = []
    stack = [pages_ref]
    seen: set[Any] = set()
    while stack and len(seen) < MAX_PAGES_WALKED:
        ref = stack.pop()
        key = ref.reference if isinstance(ref, generic.IndirectObject) else id(ref)
        if key in seen:
            continue
        seen.add(key)
        node = ref.get_object()
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            stack.extend(reversed(list(node.raw_get("/Kids"))))
        elif isinstance(ref, generic.IndirectObject):
            out.append(ref.reference)
    return out


def _pages_touched(reader: PdfFileReader, signed_revision: int) -> list[int]:
    total = reader.xrefs.total_revisions
    if signed_revision >= total - 1:
        return []
    before = set(_page_refs(reader.get_historical_resolver(signed_revision)))
    changed: set[generic.Reference] = set()
    for revision in range(signed_revision + 1, total):
        changed.update(reader.xrefs.explicit_refs_in_revision(revision))
    touched = []
    for number, ref in enumerate(_page_refs(reader), start=1):
        page = ref.get_object()
        related = {ref}
        for key in ("/Contents", "/Annots", "/Resources"):
            value = page.raw_get(key) if key in page else None
            if isinstance(value, generic.IndirectObject):
                related.add(value.reference)
                value = value.get_object()
            if isinstance(value, generic.ArrayObject) and key != "/Resources":
                related.update(v.reference for v in value if isinstance(v, generic.IndirectObject))
        if ref not in before or related & changed:
            touched.append(number)
    return touched


# -- CMS ---------------------------------------------------------------------------------------------------------

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


def _validate_cms(data: bytes, content: Path | None, spec: SignatureValidationSpec,
                  timing: ValidationTimingInfo) -> list[SignatureVerdict]:
    signed_data = _load_cms(data)
    embedded_content = signed_data["encap_content_info"]["content"]
    embedded_bytes = embedded_content.native if isinstance(embedded_content.native, bytes) else None
    if content is None and embedded_bytes is None:
        raise ContentRequired("a detached CMS signature is validated with its content: give it too")
    data_ = ltv.embedded_validation_data(signed_data)
    local_spec = _with_local(spec, data_)
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
            verdicts.append(_format_failure(ident, "CMS", one, f"unsupported digest algorithm {algorithm}"))
            continue
        has_ts = any(a["type"].native == "signature_time_stamp_token" for a in signer_info["unsigned_attrs"] or [])
        with _capturing() as captured:
            try:
                if has_ts:
                    result = asyncio.run(ades.ades_with_time_validation(one, local_spec, timing_info=timing,
                                                                        raw_digest=digest))
                else:
                    result = asyncio.run(ades.ades_basic_validation(one, local_spec, timing_info=timing,
                                                                    raw_digest=digest))
            except SignatureValidationError as exc:
                verdicts.append(_from_error(ident, "CMS", one, exc))
                continue
        verdict = _verdict(ident, "CMS", one, result, timing, embedded, captured,
                           claimed=_signing_time(signer_info))
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


def _signing_time(signer_info: cms.SignerInfo) -> datetime | None:
    for attr in signer_info["signed_attrs"] or []:
        if attr["type"].native == "signing_time":
            return attr["values"][0].native
    return None


def _cms_level(verdict: SignatureVerdict, has_revocation: bool) -> str:
    if not any(t.kind == "signature" and t.indication is Indication.TOTAL_PASSED for t in verdict.timestamps):
        return "B-B"
    if has_revocation and not any(r.source == "fetched" for r in verdict.revocation):
        return "B-LT"
    return "B-T"


# -- from pyHanko's result to the verdict ------------------------------------------------------------------------

EXPLANATIONS = {
    "HASH_FAILURE": "the signed data was changed after signing: its digest does not match",
    "SIG_CRYPTO_FAILURE": "the signature value does not verify with the signer's public key",
    "REVOKED": "the signer's certificate was revoked before the signature's proven time",
    "FORMAT_FAILURE": "the signature is not a well-formed signature of this format",
    "NOT_YET_VALID": "the certificate was not yet valid at the signing time",
    "SIG_CONSTRAINTS_FAILURE": "the signature breaks a constraint of the validation policy",
    "CHAIN_CONSTRAINTS_FAILURE": "the certificate chain breaks a constraint (key usage, path length, policy)",
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": "the certificate chain could not be validated",
    "CRYPTO_CONSTRAINTS_FAILURE": "an algorithm or key size is not acceptable",
    "CRYPTO_CONSTRAINTS_FAILURE_NO_POE": "an algorithm is no longer acceptable and nothing proves the signature "
                                         "existed while it was",
    "EXPIRED": "the certificate expired before the signing time",
    "NO_SIGNING_CERTIFICATE_FOUND": "the signer's certificate is not in the signature",
    "NO_CERTIFICATE_CHAIN_FOUND": "no chain from the signer's certificate to a trusted root",
    "REVOKED_NO_POE": "the certificate is revoked and nothing proves the signature existed before the revocation",
    "REVOKED_CA_NO_POE": "a CA certificate of the chain is revoked and nothing proves the signature existed "
                         "before",
    "OUT_OF_BOUNDS_NO_POE": "the certificate has expired (or is not yet valid) at the validation time and no "
                            "timestamp proves the signature existed while it was valid",
    "OUT_OF_BOUNDS_NOT_REVOKED": "the certificate has expired; it was not revoked while valid, but nothing "
                                 "proves the signature existed then",
    "REVOCATION_OUT_OF_BOUNDS_NO_POE": "the revocation data is outside the certificate's validity",
    "TRY_LATER": "no revocation data (OCSP or CRL) for a certificate of the chain: embed it, allow fetching, "
                 "or try later",
    "NO_POE": "nothing proves the signature existed at the time needed",
    "TIMESTAMP_ORDER_FAILURE": "the timestamps are not in the order they must be",
    "SIGNED_DATA_NOT_FOUND": "the signed data is missing",
    "POLICY_PROCESSING_ERROR": "the signature policy could not be processed",
    "SIGNATURE_POLICY_NOT_AVAILABLE": "the signature policy is not available",
    "GENERIC": "the validation could not conclude",
}


def _indication_of(sub: AdESSubIndic) -> Indication:
    return {AdESStatus.PASSED: Indication.TOTAL_PASSED, AdESStatus.FAILED: Indication.TOTAL_FAILED,
            AdESStatus.INDETERMINATE: Indication.INDETERMINATE}[sub.status]


def _verdict(ident: str, kind: str, signed_data: cms.SignedData, result: Any, timing: ValidationTimingInfo,
             embedded: list[Any], captured: _Captured, *, claimed: datetime | None) -> SignatureVerdict:
    sub = result.ades_subindic
    if sub is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and "InsufficientRevinfoError" in captured.errors:
        sub = AdESIndeterminate.TRY_LATER  # EN 319 102-1 § 5.2.6: the status cannot be determined yet
    status = result.api_status
    indication = _indication_of(sub)
    sub_name = None if sub is AdESPassed.OK else sub.standard_name
    cert = status.signing_cert if status is not None else _signer_cert(signed_data)
    path = status.validation_path if status is not None else None
    reasons = []
    if sub_name:
        reasons.append(EXPLANATIONS.get(sub_name, sub_name))
        reasons.extend(_details(sub_name, status, cert, signed_data, timing))
    if indication is not Indication.TOTAL_PASSED:
        if result.failure_msg:
            reasons.append(str(result.failure_msg)[:300])
        reasons.extend(_plain_message(m) for m in captured.messages)
    timestamps = _signature_timestamps(status, signed_data)
    if indication is Indication.TOTAL_PASSED and any(t.kind == "signature" and t.indication
                                                     is not Indication.TOTAL_PASSED for t in timestamps):
        indication, sub_name = Indication.INDETERMINATE, "NO_POE"
        reasons.append("the signature timestamp does not validate")
    best = getattr(result, "best_signature_time", None)
    proven = best if best is not None and best < timing.validation_time - timedelta(seconds=1) else None
    revocation = _revocation_objects(result, embedded)
    signer_attrs = {a["type"].native for a in signed_data["signer_infos"][0]["signed_attrs"] or []}
    baseline = "B-B" if signer_attrs & {"signing_certificate", "signing_certificate_v2"} else None
    chain = [_cert_info(c, None, anchor=(i == 0)) for i, c in enumerate(path.iter_certs(include_root=True))] \
        if path is not None else [_cert_info(c, None) for c in _embedded_certs(signed_data)]
    return SignatureVerdict(
        id=ident, kind=kind, indication=indication, sub_indication=sub_name, reasons=_unique(reasons),
        signer=cert.subject.human_friendly if cert is not None else "?",
        signer_certificate=_cert_info(cert, None) if cert is not None else None, claimed_signing_time=claimed,
        proven_signing_time=proven, level=baseline, digest_algorithm=_digest_name(signed_data),
        signature_algorithm=signed_data["signer_infos"][0]["signature_algorithm"].signature_algo,
        chain=chain, revocation=revocation, timestamps=timestamps)


def _plain_message(message: str) -> str:
    """pyHanko's warning without its bracketed context prefix."""
    return message.split("]: ", 1)[-1] if message.startswith("Validation error [") else message


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


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
        out.append(_chain_problem(cert, _embedded_certs(signed_data)))
    return out


def _chain_problem(cert: x509.Certificate, available: list[x509.Certificate]) -> str:
    """Why no chain: it ends at a root nobody trusts, or an issuer is missing."""
    by_subject = {c.subject.dump(): c for c in available}
    current = cert
    for _ in range(16):
        if current.self_signed != "no":
            return f"the chain ends at the root “{current.subject.human_friendly}”, which is not in the trust store"
        issuer = by_subject.get(current.issuer.dump())
        if issuer is None or issuer.sha256 == current.sha256:
            return (f"the issuer “{current.issuer.human_friendly}” of “{current.subject.human_friendly}” is "
                    "neither in the signature nor in the trust store")
        current = issuer
    return "the chain is too long"


def _signature_timestamps(status: Any, signed_data: cms.SignedData) -> list[TimestampInfo]:
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
        indication, sub, reason = _classic_indication(ts)
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
        cert = _signer_cert(token["content"]) if token else None
        return cert.subject.human_friendly if cert else "?"
    except (ValueError, KeyError, TypeError):
        return "?"


def _revocation_objects(result: Any, embedded: list[Any]) -> list[RevocationInfo]:
    embedded_digests = {hashlib.sha256(o.dump()).hexdigest() for o in embedded}
    out: dict[str, RevocationInfo] = {}
    for vo in result.validation_objects or []:
        if vo.object_type is ValidationObjectType.CRL:
            data = vo.value.crl_data
            info = RevocationInfo("CRL", "", data["tbs_cert_list"]["issuer"].human_friendly,
                                  data["tbs_cert_list"]["this_update"].native, hashlib.sha256(data.dump()).hexdigest())
        elif vo.object_type is ValidationObjectType.OCSP_RESPONSE:
            data = vo.value.ocsp_response_data
            basic = data["response_bytes"]["response"].parsed
            responder = basic["tbs_response_data"]["responder_id"]
            who = responder.chosen.human_friendly if responder.name == "by_name" else responder.chosen.native.hex()
            info = RevocationInfo("OCSP", "", who, basic["tbs_response_data"]["produced_at"].native,
                                  hashlib.sha256(data.dump()).hexdigest())
        else:
            continue
        source = "embedded" if info.sha256 in embedded_digests else "fetched"
        out.setdefault(info.sha256, RevocationInfo(**{**info.__dict__, "source": source}))
    return list(out.values())


def _revocation_from(context: ValidationContext, embedded: list[Any]) -> list[RevocationInfo]:
    class _Result:
        validation_objects = [
            *(type("VO", (), {"object_type": ValidationObjectType.CRL, "value": CRLContainer(c)})
              for c in context.crls),
            *(type("VO", (), {"object_type": ValidationObjectType.OCSP_RESPONSE, "value": OCSPContainer(o)})
              for o in context.ocsps)]
    return _revocation_objects(_Result, embedded)


def _chain_from_context(cert: x509.Certificate | None, context: ValidationContext) -> list[CertificateInfo]:
    """The legacy API keeps no path for a document timestamp: its TSA's certificate stands for it."""
    del context
    return [_cert_info(cert, None)] if cert is not None else []


def _cms_revocation(signed_data: cms.SignedData) -> list[Any]:
    data = ltv.embedded_validation_data(signed_data)
    return [*data.crls, *data.ocsps]


def _signer_cert(signed_data: cms.SignedData) -> x509.Certificate | None:
    try:
        sid = signed_data["signer_infos"][0]["sid"]
        for cert in _embedded_certs(signed_data):
            if sid.name == "issuer_and_serial_number":
                if cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native:
                    return cert
            elif cert.key_identifier == sid.chosen.native:
                return cert
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None


def _has_cert(signed_data: cms.SignedData) -> bool:
    return _signer_cert(signed_data) is not None


def _embedded_certs(signed_data: cms.SignedData) -> list[x509.Certificate]:
    try:
        return [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
    except (ValueError, TypeError):
        return []


def _digest_name(signed_data: cms.SignedData) -> str | None:
    try:
        return signed_data["signer_infos"][0]["digest_algorithm"]["algorithm"].native
    except (ValueError, KeyError, IndexError):
        return None


def _cert_info(cert: x509.Certificate, options: ValidationOptions | None, *, anchor: bool = False) -> CertificateInfo:
    validity = cert["tbs_certificate"]["validity"]
    return CertificateInfo(subject=cert.subject.human_friendly, issuer=cert.issuer.human_friendly,
                           serial=format(cert.serial_number, "x"), not_before=validity["not_before"].native,
                           not_after=validity["not_after"].native, sha256=cert.sha256.hex(), trust_anchor=anchor)


def _format_failure(ident: str, kind: str, signed_data: cms.SignedData, reason: str) -> SignatureVerdict:
    cert = _signer_cert(signed_data)
    return SignatureVerdict(
        id=ident, kind=kind, indication=Indication.TOTAL_FAILED, sub_indication="FORMAT_FAILURE",
        reasons=[EXPLANATIONS["FORMAT_FAILURE"], reason], signer=cert.subject.human_friendly if cert else "?",
        signer_certificate=_cert_info(cert, None) if cert else None, claimed_signing_time=None,
        proven_signing_time=None, level=None, digest_algorithm=_digest_name(signed_data))


def _from_error(ident: str, kind: str, signed_data: cms.SignedData, exc: SignatureValidationError
                ) -> SignatureVerdict:
    sub = exc.ades_subindication
    if sub is None:
        return _format_failure(ident, kind, signed_data, exc.failure_message)
    cert = _signer_cert(signed_data)
    return SignatureVerdict(
        id=ident, kind=kind, indication=_indication_of(sub), sub_indication=sub.standard_name,
        reasons=[EXPLANATIONS.get(sub.standard_name, sub.standard_name), exc.failure_message[:300]],
        signer=cert.subject.human_friendly if cert else "?", signer_certificate=_cert_info(cert, None) if cert else None,
        claimed_signing_time=_signing_time(signed_data["signer_infos"][0]), proven_signing_time=None, level=None,
        digest_algorithm=_digest_name(signed_data))
