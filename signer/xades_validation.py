"""Validating XML signatures (XMLDSig, XAdES B-B to B-LT) into the verdicts PDF and CMS get.

Every ``ds:Signature`` of a document read by ``signer.xml_safety`` (no DTD, no entity, no network,
bounded size and depth) gets an ETSI EN 319 102-1 indication, as ``signer.validation`` gives PDF and
CMS signatures: the cryptography first, then the signer's chain at the validation time, then, if a
signature timestamp proves an earlier existence, the chain's failures that such a proof cures.

What the libraries do:

* signxml's ``XAdESVerifier`` (``XMLVerifier`` for a plain XMLDSig) checks each reference's digest
  after its transforms, the ``SignatureValue`` over the canonical ``SignedInfo`` with the signing
  certificate's key (RSA PKCS#1 v1.5, RSA-PSS with MGF1, ECDSA as r‖s), the signature against the
  schema, and the SigningCertificate(V2) digest. It is given the signing certificate, so its own
  chain check (one CA file, the current clock, no revocation) is not used;
* pyhanko-certvalidator builds and validates the signer's chain to the trust anchors at the
  validation time, revocation in hard-fail mode from the embedded data (fetching only when asked),
  and pyHanko maps its errors to sub-indications;
* pyHanko's ETSI timestamp procedure validates a SignatureTimeStamp token: the TSA's signature,
  its chain and the message imprint.

What is written here, because signxml does not do it:

* the reference policy, checked before any digest: same-document ``#Id`` references only, each Id
  carried by exactly one element over ``Id``, ``ID``, ``id`` and ``xml:id`` (signxml resolves one
  attribute name at a time, so an ``Id`` and an ``ID`` of the same value would let it check one
  element while a reader sees another: signature wrapping), transforms limited to exclusive
  canonicalisation and enveloped-signature (anything else, XPath and XSLT included, is refused),
  one ``SignedProperties`` reference, typed as such, inside this signature;
* finding the n-th signature of a document, where signxml looks at one fixed path; and leaving the
  certificate's validity period to pyhanko-certvalidator, since signxml checks it against the
  current clock and would refuse what a timestamp proves was signed while the certificate was valid;
* the unsigned properties, which signxml ignores: the SignatureTimeStamp's imprint is computed
  over the canonicalised ``SignatureValue`` here, and CertificateValues and RevocationValues become
  the validation's local knowledge;
* the validation with time (EN 319 102-1 § 5.5): pyHanko's procedure takes a CMS SignerInfo, so its
  rule is applied here: a timestamp before the revocation, or within the certificate's validity,
  cures REVOKED_NO_POE or OUT_OF_BOUNDS_NO_POE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from asn1crypto import cms, crl, ocsp, x509
from cryptography import x509 as cx509
from lxml import etree
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESPassed, AdESSubIndic
from pyhanko.sign.validation import ades, generic_cms
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec, bootstrap_validation_data_handlers
from pyhanko.sign.validation.status import StandardCMSSignatureStatus
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from signxml import CanonicalizationMethod, SignatureConstructionMethod, XMLVerifier
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier, XAdESVerifyResult

from signer import ltv, validation, xml_safety
from signer.validation_report import Indication, RevocationInfo, SignatureVerdict, TimestampInfo

DS_NS = xml_safety.DS_NS
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
NS = {"ds": DS_NS, "xades": XADES_NS}
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
C14N_10 = CanonicalizationMethod.CANONICAL_XML_1_0.value
ENVELOPED = SignatureConstructionMethod.enveloped.value
REFERENCE_TRANSFORMS = frozenset({EXC_C14N, ENVELOPED})
SIGNED_INFO_C14N = frozenset({EXC_C14N, C14N_10})
TIMESTAMP_C14N = frozenset({EXC_C14N, C14N_10})
_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",  # SigningCertificate (v1) identifies with it
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
_ID_NAMES = frozenset({"Id", "ID", "id"})
_SAME_DOCUMENT = re.compile(r"#([^\W\d][\w.\-]*)")
_CURED_BY_TIME = frozenset({AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE,
                            AdESIndeterminate.OUT_OF_BOUNDS_NO_POE})


def _ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def _xades(tag: str) -> str:
    return f"{{{XADES_NS}}}{tag}"


def _parser() -> etree.XMLParser:
    """For signxml's internal copies of an already safely parsed tree: the same locks, all the same."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           attribute_defaults=False, huge_tree=False)


class _Stop(Exception):
    """A verdict reached before the chain: a malformed, tampered or unidentifiable signature."""

    def __init__(self, sub: AdESSubIndic, reason: str) -> None:
        super().__init__(reason)
        self.sub, self.reason = sub, reason[:300]


# -- signxml, told which signature and left off the clock ------------------------------------------------------


class _Positioned:
    """The n-th ``ds:Signature`` of the document (signxml's copies keep the order); no validity-period check."""

    position: int

    def _get_signature(self, root: etree._Element) -> etree._Element:
        found = list(root.iter(_ds("Signature")))
        if self.position >= len(found):
            raise InvalidInput("the signature is not where it was")
        return found[self.position]

    def _check_cert_validity(self, cert: cx509.Certificate, cert_source: str) -> None:
        return None  # the validity period at the right time is pyhanko-certvalidator's

    def _tostring(self, xml_node: etree._Element, **kwargs: Any) -> bytes:
        kwargs.setdefault("encoding", "UTF-8")  # not ASCII: text in comments and PIs stays as it is
        return etree.tostring(xml_node, **kwargs)


class _XadesVerifier(_Positioned, XAdESVerifier):
    def __init__(self, position: int) -> None:
        super().__init__()
        self.position = position


class _DsigVerifier(_Positioned, XMLVerifier):
    def __init__(self, position: int) -> None:
        super().__init__()
        self.position = position


# -- the document ---------------------------------------------------------------------------------------------------


def validate(data: bytes, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
             options: validation.ValidationOptions) -> list[SignatureVerdict]:
    """A verdict for every ``ds:Signature`` of the XML ``data``."""
    tree = xml_safety.parse(data)
    root = tree.getroot()
    signatures = list(root.iter(_ds("Signature")))
    if not signatures:
        raise validation.NotSigned("the XML document carries no signature (ds:Signature)")
    index = _id_index(root)
    return [_signature_verdict(root, n, element, index, spec, timing, options)
            for n, element in enumerate(signatures)]


def _id_index(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every Id value and the elements carrying it, under any attribute a resolver may take for an Id."""
    index: dict[str, list[etree._Element]] = {}
    for element in root.iter(etree.Element):
        for name, value in element.attrib.items():
            if name == xml_safety.XML_ID or etree.QName(name).localname in _ID_NAMES:
                holders = index.setdefault(value, [])
                if not any(h is element for h in holders):
                    holders.append(element)
    return index


# -- one signature ---------------------------------------------------------------------------------------------------


@dataclass
class _Signature:
    element: etree._Element
    ident: str
    xades: bool
    signed_properties: etree._Element | None
    key_info_certs: list[x509.Certificate]
    embedded: ltv.ValidationData
    tokens: list[tuple[cms.ContentInfo, bytes]] = field(default_factory=list)
    """Each SignatureTimeStamp's token and the canonical ``SignatureValue`` its imprint must cover."""
    signing_cert: x509.Certificate | None = None


def _signature_verdict(root: etree._Element, position: int, element: etree._Element,
                       index: dict[str, list[etree._Element]], spec: SignatureValidationSpec,
                       timing: ValidationTimingInfo, options: validation.ValidationOptions) -> SignatureVerdict:
    ident = element.get("Id") or f"signature-{position + 1}"
    kind, sig = "XAdES", None
    try:
        sig = _read(element, ident, index)
        kind = "XAdES" if sig.xades else "XMLDSig"
        sig.signing_cert = _signing_certificate(sig)
        claimed = _verify_crypto(root, position, sig)
    except _Stop as stop:
        return _stopped(ident, kind, stop, sig)
    local = validation._with_local(spec, sig.embedded)
    with validation._capturing() as captured:
        outcome = asyncio.run(_validate_with_time(sig, local, timing))
    return _verdict(sig, kind, claimed, outcome, timing, captured)


def _read(element: etree._Element, ident: str, index: dict[str, list[etree._Element]]) -> _Signature:
    """The signature's structure, against the reference policy; its certificates and unsigned properties."""
    signed_info = element.find(_ds("SignedInfo"))
    if signed_info is None or element.find(_ds("SignatureValue")) is None:
        raise _Stop(AdESFailure.FORMAT_FAILURE, "the signature has no SignedInfo or no SignatureValue")
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    if c14n is None or c14n.get("Algorithm") not in SIGNED_INFO_C14N:
        raise _Stop(AdESFailure.FORMAT_FAILURE, "SignedInfo is canonicalised with "
                    f"{xml_safety.quote(str(c14n.get('Algorithm') if c14n is not None else None))}: "
                    "only exclusive or inclusive XML canonicalisation 1.0 is accepted")
    references = signed_info.findall(_ds("Reference"))
    if not references:
        raise _Stop(AdESFailure.FORMAT_FAILURE, "SignedInfo has no reference")
    properties: list[etree._Element] = []
    covers_data = False
    for reference in references:
        target = _target(reference, index)
        transforms = [t.get("Algorithm") for t in reference.findall(f"{_ds('Transforms')}/{_ds('Transform')}")]
        refused = [t for t in transforms if t not in REFERENCE_TRANSFORMS]
        if refused:
            raise _Stop(AdESFailure.FORMAT_FAILURE, f"the reference {xml_safety.quote(reference.get('URI', ''))} "
                        f"uses the transform {xml_safety.quote(str(refused[0]))}: only exclusive canonicalisation "
                        "and enveloped-signature are accepted")
        if EXC_C14N not in transforms:
            raise _Stop(AdESFailure.FORMAT_FAILURE, f"the reference {xml_safety.quote(reference.get('URI', ''))} "
                        "does not name its canonicalisation (an exclusive canonicalisation transform)")
        is_properties = target.tag == _xades("SignedProperties")
        if is_properties != (reference.get("Type") == SIGNED_PROPERTIES_TYPE):
            raise _Stop(AdESFailure.FORMAT_FAILURE, "a reference to xades:SignedProperties must carry the Type "
                        f"{SIGNED_PROPERTIES_TYPE}, and only such a reference")
        inside = target is element or any(a is element for a in target.iterancestors())
        if is_properties:
            if not inside:
                raise _Stop(AdESFailure.FORMAT_FAILURE, "the SignedProperties referenced belong to another signature")
            properties.append(target)
        elif not inside:
            covers_data = True
    if not covers_data:
        raise _Stop(AdESFailure.FORMAT_FAILURE, "the signature covers nothing of the document outside itself")
    if len(properties) > 1:
        raise _Stop(AdESFailure.FORMAT_FAILURE, "the signature references several SignedProperties")
    signed_properties = properties[0] if properties else None
    qualifying = signed_properties.getparent() if signed_properties is not None else None
    if qualifying is not None and (qualifying.tag != _xades("QualifyingProperties")
                                   or qualifying.get("Target") != f"#{element.get('Id')}"):
        raise _Stop(AdESFailure.FORMAT_FAILURE, "the QualifyingProperties do not target this signature")
    try:
        key_info_certs = [_cert(t) for t in element.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()",
                                                          namespaces=NS)]
        sig = _Signature(element, ident, signed_properties is not None, signed_properties, key_info_certs,
                         ltv.ValidationData([], [], []))
        if qualifying is not None:
            _read_unsigned(sig, qualifying)
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise _Stop(AdESFailure.FORMAT_FAILURE, f"a certificate, timestamp or revocation value cannot be read: "
                    f"{type(exc).__name__}") from exc
    return sig


def _target(reference: etree._Element, index: dict[str, list[etree._Element]]) -> etree._Element:
    uri = reference.get("URI")
    match = _SAME_DOCUMENT.fullmatch(uri or "")
    if match is None:
        raise _Stop(AdESFailure.FORMAT_FAILURE, f"the reference URI {xml_safety.quote(str(uri))} is not an "
                    "element of this document named by its Id (#id); others are not accepted")
    holders = index.get(match.group(1), [])
    if not holders:
        raise _Stop(AdESIndeterminate.SIGNED_DATA_NOT_FOUND, f"no element has the Id {xml_safety.quote(uri)}")
    if len(holders) > 1:
        raise _Stop(AdESFailure.FORMAT_FAILURE, f"{len(holders)} elements carry the Id {xml_safety.quote(uri[1:])}: "
                    "which one is signed would depend on the reader (signature wrapping)")
    return holders[0]


def _cert(text: str) -> x509.Certificate:
    return _cert_der(base64.b64decode("".join(text.split()), validate=True))


def _cert_der(der: bytes) -> x509.Certificate:
    cert = x509.Certificate.load(der)
    cert.native  # noqa: B018 - parse it all now
    return cert


def _values(parent: etree._Element | None, path: str) -> list[bytes]:
    if parent is None:
        return []
    return [base64.b64decode("".join((t or "").split()), validate=True)
            for t in parent.xpath(f"{path}/text()", namespaces=NS)]


def _read_unsigned(sig: _Signature, qualifying: etree._Element) -> None:
    unsigned = qualifying.find(f"{_xades('UnsignedProperties')}/{_xades('UnsignedSignatureProperties')}")
    certs = list(sig.key_info_certs)
    crls: list[crl.CertificateList] = []
    ocsps: list[ocsp.OCSPResponse] = []
    if unsigned is not None:
        value = sig.element.find(_ds("SignatureValue"))
        for stamp in unsigned.findall(_xades("SignatureTimeStamp")):
            method = stamp.find(_ds("CanonicalizationMethod"))
            algorithm = method.get("Algorithm") if method is not None else C14N_10  # XAdES's default
            if algorithm not in TIMESTAMP_C14N:
                raise ValueError(f"timestamp canonicalisation {algorithm}")
            [der] = _values(stamp, "xades:EncapsulatedTimeStamp")
            token = cms.ContentInfo.load(der)
            token.native  # noqa: B018
            covered = etree.tostring(value, method="c14n", exclusive=algorithm == EXC_C14N, with_comments=False)
            sig.tokens.append((token, covered))
            certs += ltv.token_certificates(token)
        certs += [_cert_der(d) for d in _values(unsigned, "xades:CertificateValues/xades:EncapsulatedX509Certificate")]
        for der in _values(unsigned, "xades:RevocationValues/xades:CRLValues/xades:EncapsulatedCRLValue"):
            crls.append(crl.CertificateList.load(der))
            crls[-1].native  # noqa: B018
        for der in _values(unsigned, "xades:RevocationValues/xades:OCSPValues/xades:EncapsulatedOCSPValue"):
            ocsps.append(ocsp.OCSPResponse.load(der))
            ocsps[-1].native  # noqa: B018
    sig.embedded = ltv.ValidationData(list({c.sha256: c for c in certs}.values()), crls, ocsps)


def _signing_certificate(sig: _Signature) -> x509.Certificate:
    """XAdES: the certificate whose digest SigningCertificate(V2) signs; XMLDSig: the first in KeyInfo."""
    candidates = list({c.sha256: c for c in [*sig.key_info_certs, *sig.embedded.certificates]}.values())
    if not sig.xades:
        if not sig.key_info_certs:
            raise _Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, "KeyInfo carries no X.509 certificate")
        return sig.key_info_certs[0]
    assert sig.signed_properties is not None
    digest = sig.signed_properties.find(
        "xades:SignedSignatureProperties/xades:SigningCertificateV2/xades:Cert/xades:CertDigest", NS)
    if digest is None:
        digest = sig.signed_properties.find(
            "xades:SignedSignatureProperties/xades:SigningCertificate/xades:Cert/xades:CertDigest", NS)
    if digest is None:
        raise _Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND,
                    "the signed properties do not name the signing certificate (SigningCertificateV2)")
    name = _DIGESTS.get(str(digest.find(_ds("DigestMethod")).get("Algorithm")
                            if digest.find(_ds("DigestMethod")) is not None else None))
    try:
        value = base64.b64decode("".join((digest.findtext(_ds("DigestValue")) or "").split()), validate=True)
    except binascii.Error:
        value = b""
    for cert in candidates if name else []:
        if hashlib.new(name, cert.dump()).digest() == value:
            return cert
    raise _Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, "no certificate in the signature has the digest "
                "that SigningCertificateV2 signs")


def _verify_crypto(root: etree._Element, position: int, sig: _Signature) -> datetime | None:
    """signxml's checks: references, SignatureValue, schema, signing certificate digest; the claimed time."""
    assert sig.signing_cert is not None
    verifier = _XadesVerifier(position) if sig.xades else _DsigVerifier(position)
    config = XAdESSignatureConfiguration(expect_references=True)
    try:
        results = verifier.verify(root, x509_cert=cx509.load_der_x509_certificate(sig.signing_cert.dump()),
                                  parser=_parser(), expect_config=config)
    except InvalidDigest as exc:
        if "reference" in str(exc):
            raise _Stop(AdESFailure.HASH_FAILURE, str(exc)) from exc
        raise _Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, str(exc)) from exc
    except InvalidCertificate as exc:
        raise _Stop(AdESFailure.FORMAT_FAILURE, str(exc)) from exc
    except InvalidSignature as exc:
        raise _Stop(AdESFailure.SIG_CRYPTO_FAILURE, str(exc)) from exc
    except InvalidInput as exc:
        if "forbidden by configuration" in str(exc):
            raise _Stop(AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE, str(exc)) from exc
        raise _Stop(AdESFailure.FORMAT_FAILURE, str(exc)) from exc
    except (SignXMLException, etree.DocumentInvalid, etree.LxmlError, ValueError, TypeError, KeyError) as exc:
        raise _Stop(AdESFailure.FORMAT_FAILURE, f"{type(exc).__name__}: {exc}") from exc
    if not sig.xades:
        return None
    verified = next(r for r in results if isinstance(r, XAdESVerifyResult))
    return _xml_time(verified.signed_properties.findtext("xades:SigningTime", namespaces=NS))


def _xml_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- the chain, the timestamps, and the validation with time ---------------------------------------------------------


@dataclass
class _Outcome:
    sub: AdESSubIndic
    path: Any
    revocation_details: Any
    timestamps: list[TimestampInfo]
    poe: datetime | None
    revocation: list[RevocationInfo]
    failure: str | None = None


async def _validate_with_time(sig: _Signature, spec: SignatureValidationSpec,
                              timing: ValidationTimingInfo) -> _Outcome:
    assert sig.signing_cert is not None
    embedded = [*sig.embedded.crls, *sig.embedded.ocsps]
    async with ades._operation_scoped_spec(spec) as scoped:
        handlers = bootstrap_validation_data_handlers(spec=scoped, timing_info=timing)
        context = scoped.cert_validation_policy.build_validation_context(timing_info=timing, handlers=handlers)
        usage = StandardCMSSignatureStatus.default_usage_constraints(scoped.key_usage_settings)
        with validation._capturing() as chain_capture:
            checked = await generic_cms.validate_cert_usage(
                sig.signing_cert, context, usage, context.path_builder.async_build_paths_lazy(sig.signing_cert))
        sub: AdESSubIndic = AdESPassed.OK if checked.success_result is not None else checked.error_subindic
        if sub is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and \
                "InsufficientRevinfoError" in chain_capture.errors:
            sub = AdESIndeterminate.TRY_LATER  # EN 319 102-1 § 5.2.6: the status cannot be determined yet
        timestamps, poe, ts_sub, revocation = [], None, None, validation._revocation_from(context, embedded)
        for token, covered in sig.tokens:
            info, result = await _timestamp(token, covered, scoped, timing)
            timestamps.append(info)
            if result is not None:
                revocation += validation._revocation_objects(result, embedded)
            if info.indication is Indication.TOTAL_PASSED and info.time is not None:
                poe = info.time if poe is None else min(poe, info.time)
            elif ts_sub is None:
                ts_sub = info
    path = checked.success_result or checked.error_path
    outcome = _Outcome(sub, path, checked.revo_details, timestamps, poe, list({r.sha256: r for r in revocation}.values()))
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

    with validation._capturing() as captured:
        try:
            result = await ades.ades_timestamp_validation(signed_data, spec, imprint, timing_info=timing)
        except (SignatureValidationError, ValueError) as exc:
            return TimestampInfo("signature", gen_time, tsa, Indication.TOTAL_FAILED, "FORMAT_FAILURE",
                                 f"the timestamp token cannot be validated: {exc}"[:300]), None
    sub = result.ades_subindic
    if sub is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and "InsufficientRevinfoError" in captured.errors:
        sub = AdESIndeterminate.TRY_LATER
    status = result.api_status
    if status is not None and status.signing_cert is not None:
        tsa = status.signing_cert.subject.human_friendly
    when = status.timestamp if status is not None else gen_time
    if sub is AdESPassed.OK:
        return TimestampInfo("signature", when, tsa, Indication.TOTAL_PASSED), result
    reason = {"HASH_FAILURE": "the timestamp's message imprint is not that of the canonical SignatureValue",
              "SIG_CRYPTO_FAILURE": "the TSA's signature does not verify"}.get(
        sub.standard_name, f"the TSA's certificate does not validate to the trust store "
                           f"({validation.EXPLANATIONS.get(sub.standard_name, sub.standard_name)})")
    return TimestampInfo("signature", when, tsa, validation._indication_of(sub), sub.standard_name, reason), result


def _tsa_name(signed_data: cms.SignedData) -> str:
    cert = validation._signer_cert(signed_data)
    return cert.subject.human_friendly if cert is not None else "?"


# -- the verdict ----------------------------------------------------------------------------------------------------


def _signature_algorithm(element: etree._Element) -> str | None:
    method = element.find(f"{_ds('SignedInfo')}/{_ds('SignatureMethod')}")
    return method.get("Algorithm") if method is not None else None


def _digest_algorithm(element: etree._Element) -> str | None:
    method = element.find(f"{_ds('SignedInfo')}/{_ds('Reference')}/{_ds('DigestMethod')}")
    return _DIGESTS.get(str(method.get("Algorithm"))) if method is not None else None


def _claimed_unverified(sig: _Signature | None) -> datetime | None:
    if sig is None or sig.signed_properties is None:
        return None
    return _xml_time(sig.signed_properties.findtext("xades:SignedSignatureProperties/xades:SigningTime",
                                                    namespaces=NS))


def _stopped(ident: str, kind: str, stop: _Stop, sig: _Signature | None) -> SignatureVerdict:
    cert = sig.signing_cert if sig is not None else None
    if cert is None and sig is not None and sig.key_info_certs:
        cert = sig.key_info_certs[0]
    name = stop.sub.standard_name
    element = sig.element if sig is not None else None
    return SignatureVerdict(
        id=ident, kind=kind, indication=validation._indication_of(stop.sub), sub_indication=name,
        reasons=[validation.EXPLANATIONS.get(name, name), stop.reason],
        signer=cert.subject.human_friendly if cert is not None else "?",
        signer_certificate=validation._cert_info(cert, None) if cert is not None else None,
        claimed_signing_time=_claimed_unverified(sig), proven_signing_time=None, level=None,
        digest_algorithm=_digest_algorithm(element) if element is not None else None,
        signature_algorithm=_signature_algorithm(element) if element is not None else None)


def _verdict(sig: _Signature, kind: str, claimed: datetime | None, outcome: _Outcome, timing: ValidationTimingInfo,
             captured: Any) -> SignatureVerdict:
    cert = sig.signing_cert
    assert cert is not None
    sub = outcome.sub
    indication = validation._indication_of(sub)
    sub_name = None if sub is AdESPassed.OK else sub.standard_name
    reasons: list[str] = []
    if sub_name:
        reasons.append(validation.EXPLANATIONS.get(sub_name, sub_name))
        details = outcome.revocation_details
        if details is not None and sub_name in ("REVOKED", "REVOKED_NO_POE", "REVOKED_CA_NO_POE"):
            reasons.append(f"revoked on {details.revocation_date.isoformat()} ({details.revocation_reason.native})")
        if sub_name in ("OUT_OF_BOUNDS_NO_POE", "NOT_YET_VALID", "EXPIRED"):
            validity = cert["tbs_certificate"]["validity"]
            reasons.append(f"the certificate is valid from {validity['not_before'].native.isoformat()} to "
                           f"{validity['not_after'].native.isoformat()}; validation time "
                           f"{timing.validation_time.isoformat(timespec='seconds')}")
        if sub_name == "NO_CERTIFICATE_CHAIN_FOUND" and outcome.failure is None:
            reasons.append(validation._chain_problem(cert, sig.embedded.certificates))
        if outcome.failure:
            reasons.append(outcome.failure)
        reasons.extend(validation._plain_message(m) for m in captured.messages)
    path = outcome.path
    chain = [validation._cert_info(c, None, anchor=(i == 0)) for i, c in enumerate(path.iter_certs(include_root=True))] \
        if path is not None else [validation._cert_info(cert, None)]
    return SignatureVerdict(
        id=sig.ident, kind=kind, indication=indication, sub_indication=sub_name, reasons=validation._unique(reasons),
        signer=cert.subject.human_friendly, signer_certificate=validation._cert_info(cert, None),
        claimed_signing_time=claimed, proven_signing_time=outcome.poe, level=_level(sig, outcome),
        digest_algorithm=_digest_algorithm(sig.element), signature_algorithm=_signature_algorithm(sig.element),
        chain=chain, revocation=outcome.revocation, timestamps=outcome.timestamps)


def _level(sig: _Signature, outcome: _Outcome) -> str | None:
    if not sig.xades:
        return None
    if not any(t.indication is Indication.TOTAL_PASSED for t in outcome.timestamps):
        return "B-B"
    if (sig.embedded.crls or sig.embedded.ocsps) and not any(r.source == "fetched" for r in outcome.revocation):
        return "B-LT"
    return "B-T"
