"""XML signatures (XMLDSig, XAdES B-B to B-LT) into the verdicts PDF and CMS signatures get.

Every ``ds:Signature`` of a document read by ``signer.xml_safety`` (no DTD, no entity, no network,
bounded size and depth) gets an ETSI EN 319 102-1 indication: its structure against the reference
policy first (``xml_signature``), then the cryptography (``xml_crypto``), then the signer's chain at
the validation time and, if a signature timestamp proves an earlier existence, the chain's failures
that such a proof cures (``xml_chain``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from lxml import etree
from pyhanko.sign.ades.report import AdESPassed
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from signer import xml_safety
from signer.validation.capture import Captured, capturing
from signer.validation.certificates import cert_info, chain_problem
from signer.validation.errors import NotSigned
from signer.validation.indications import EXPLANATIONS, indication_of, plain_message, unique
from signer.validation.policy import ValidationOptions, signature_spec, validation_timing, with_local
from signer.validation.xml_chain import Outcome, validate_with_time
from signer.validation.xml_crypto import verify_crypto
from signer.validation.xml_signature import (
    DIGESTS,
    NS,
    Stop,
    XmlSignature,
    ds,
    id_index,
    read,
    signing_certificate,
    xml_time,
)
from signer.validation_report import Indication, SignatureVerdict


def verify(document: bytes, options: ValidationOptions) -> list[SignatureVerdict]:
    """A verdict for every signature of the XML ``document``, at the time and with the policy of ``options``."""
    now = options.at or datetime.now(timezone.utc)
    return validate(document, signature_spec(options), validation_timing(options, now), options)


def validate(data: bytes, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
             options: ValidationOptions) -> list[SignatureVerdict]:
    """A verdict for every ``ds:Signature`` of the XML ``data``."""
    tree = xml_safety.parse(data)
    root = tree.getroot()
    signatures = list(root.iter(ds("Signature")))
    if not signatures:
        raise NotSigned("the XML document carries no signature (ds:Signature)")
    index = id_index(root)
    return [_signature_verdict(root, n, element, index, spec, timing, options)
            for n, element in enumerate(signatures)]


def _signature_verdict(root: etree._Element, position: int, element: etree._Element,
                       index: dict[str, list[etree._Element]], spec: SignatureValidationSpec,
                       timing: ValidationTimingInfo, options: ValidationOptions) -> SignatureVerdict:
    ident = element.get("Id") or f"signature-{position + 1}"
    kind, sig = "XAdES", None
    try:
        sig = read(element, ident, index)
        kind = "XAdES" if sig.xades else "XMLDSig"
        sig.signing_cert = signing_certificate(sig)
        claimed = verify_crypto(root, position, sig)
    except Stop as stop:
        return _stopped(ident, kind, stop, sig)
    local = with_local(spec, sig.embedded)
    with capturing() as captured:
        outcome = asyncio.run(validate_with_time(sig, local, timing))
    return _verdict(sig, kind, claimed, outcome, timing, captured)


def _signature_algorithm(element: etree._Element) -> str | None:
    method = element.find(f"{ds('SignedInfo')}/{ds('SignatureMethod')}")
    return method.get("Algorithm") if method is not None else None


def _digest_algorithm(element: etree._Element) -> str | None:
    method = element.find(f"{ds('SignedInfo')}/{ds('Reference')}/{ds('DigestMethod')}")
    return DIGESTS.get(str(method.get("Algorithm"))) if method is not None else None


def _claimed_unverified(sig: XmlSignature | None) -> datetime | None:
    if sig is None or sig.signed_properties is None:
        return None
    return xml_time(sig.signed_properties.findtext("xades:SignedSignatureProperties/xades:SigningTime",
                                                   namespaces=NS))


def _stopped(ident: str, kind: str, stop: Stop, sig: XmlSignature | None) -> SignatureVerdict:
    cert = sig.signing_cert if sig is not None else None
    if cert is None and sig is not None and sig.key_info_certs:
        cert = sig.key_info_certs[0]
    name = stop.sub.standard_name
    element = sig.element if sig is not None else None
    return SignatureVerdict(
        id=ident, kind=kind, indication=indication_of(stop.sub), sub_indication=name,
        reasons=[EXPLANATIONS.get(name, name), stop.reason],
        signer=cert.subject.human_friendly if cert is not None else "?",
        signer_certificate=cert_info(cert) if cert is not None else None,
        claimed_signing_time=_claimed_unverified(sig), proven_signing_time=None, level=None,
        digest_algorithm=_digest_algorithm(element) if element is not None else None,
        signature_algorithm=_signature_algorithm(element) if element is not None else None)


def _verdict(sig: XmlSignature, kind: str, claimed: datetime | None, outcome: Outcome, timing: ValidationTimingInfo,
             captured: Captured) -> SignatureVerdict:
    cert = sig.signing_cert
    assert cert is not None
    sub = outcome.sub
    indication = indication_of(sub)
    sub_name = None if sub is AdESPassed.OK else sub.standard_name
    reasons: list[str] = []
    if sub_name:
        reasons.append(EXPLANATIONS.get(sub_name, sub_name))
        details = outcome.revocation_details
        if details is not None and sub_name in ("REVOKED", "REVOKED_NO_POE", "REVOKED_CA_NO_POE"):
            reasons.append(f"revoked on {details.revocation_date.isoformat()} ({details.revocation_reason.native})")
        if sub_name in ("OUT_OF_BOUNDS_NO_POE", "NOT_YET_VALID", "EXPIRED"):
            validity = cert["tbs_certificate"]["validity"]
            reasons.append(f"the certificate is valid from {validity['not_before'].native.isoformat()} to "
                           f"{validity['not_after'].native.isoformat()}; validation time "
                           f"{timing.validation_time.isoformat(timespec='seconds')}")
        if sub_name == "NO_CERTIFICATE_CHAIN_FOUND" and outcome.failure is None:
            reasons.append(chain_problem(cert, sig.embedded.certificates))
        if outcome.failure:
            reasons.append(outcome.failure)
        reasons.extend(plain_message(m) for m in captured.messages)
    path = outcome.path
    chain = [cert_info(c, anchor=(i == 0)) for i, c in enumerate(path.iter_certs(include_root=True))] \
        if path is not None else [cert_info(cert)]
    return SignatureVerdict(
        id=sig.ident, kind=kind, indication=indication, sub_indication=sub_name, reasons=unique(reasons),
        signer=cert.subject.human_friendly, signer_certificate=cert_info(cert),
        claimed_signing_time=claimed, proven_signing_time=outcome.poe, level=_level(sig, outcome),
        digest_algorithm=_digest_algorithm(sig.element), signature_algorithm=_signature_algorithm(sig.element),
        chain=chain, revocation=outcome.revocation, timestamps=outcome.timestamps)


def _level(sig: XmlSignature, outcome: Outcome) -> str | None:
    if not sig.xades:
        return None
    if not any(t.indication is Indication.TOTAL_PASSED for t in outcome.timestamps):
        return "B-B"
    if (sig.embedded.crls or sig.embedded.ocsps) and not any(r.source == "fetched" for r in outcome.revocation):
        return "B-LT"
    return "B-T"
