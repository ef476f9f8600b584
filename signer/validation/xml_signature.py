"""One ``ds:Signature`` read against the reference policy, before any digest is checked.

signxml resolves one Id attribute name at a time, so an ``Id`` and an ``ID`` of the same value would
let it check one element while a reader sees another (signature wrapping). Hence, here: same-document
``#Id`` references only, each Id carried by exactly one element over ``Id``, ``ID``, ``id`` and
``xml:id``; transforms limited to exclusive canonicalisation and enveloped-signature (anything else,
XPath and XSLT included, is refused); one ``SignedProperties`` reference, typed as such, inside this
signature. signxml ignores the unsigned properties: each SignatureTimeStamp is paired here with the
canonicalised ``SignatureValue`` its imprint covers, and CertificateValues and RevocationValues become
the validation's local knowledge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from asn1crypto import cms, crl, ocsp, x509
from lxml import etree
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESSubIndic
from signxml import CanonicalizationMethod, SignatureConstructionMethod

from signer import ltv, xml_safety

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
DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",  # SigningCertificate (v1) identifies with it
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}
_ID_NAMES = frozenset({"Id", "ID", "id"})
_SAME_DOCUMENT = re.compile(r"#([^\W\d][\w.\-]*)")


def ds(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def xades(tag: str) -> str:
    return f"{{{XADES_NS}}}{tag}"


class Stop(Exception):
    """A verdict reached before the chain: a malformed, tampered or unidentifiable signature."""

    def __init__(self, sub: AdESSubIndic, reason: str) -> None:
        super().__init__(reason)
        self.sub, self.reason = sub, reason[:300]


@dataclass
class XmlSignature:
    element: etree._Element
    ident: str
    xades: bool
    signed_properties: etree._Element | None
    key_info_certs: list[x509.Certificate]
    embedded: ltv.ValidationData
    tokens: list[tuple[cms.ContentInfo, bytes]] = field(default_factory=list)
    """Each SignatureTimeStamp's token and the canonical ``SignatureValue`` its imprint must cover."""
    signing_cert: x509.Certificate | None = None


def id_index(root: etree._Element) -> dict[str, list[etree._Element]]:
    """Every Id value and the elements carrying it, under any attribute a resolver may take for an Id."""
    index: dict[str, list[etree._Element]] = {}
    for element in root.iter(etree.Element):
        for name, value in element.attrib.items():
            if name == xml_safety.XML_ID or etree.QName(name).localname in _ID_NAMES:
                holders = index.setdefault(value, [])
                if not any(h is element for h in holders):
                    holders.append(element)
    return index


def read(element: etree._Element, ident: str, index: dict[str, list[etree._Element]]) -> XmlSignature:
    """The signature's structure, against the reference policy; its certificates and unsigned properties."""
    signed_info = element.find(ds("SignedInfo"))
    if signed_info is None or element.find(ds("SignatureValue")) is None:
        raise Stop(AdESFailure.FORMAT_FAILURE, "the signature has no SignedInfo or no SignatureValue")
    c14n = signed_info.find(ds("CanonicalizationMethod"))
    if c14n is None or c14n.get("Algorithm") not in SIGNED_INFO_C14N:
        raise Stop(AdESFailure.FORMAT_FAILURE, "SignedInfo is canonicalised with "
                   f"{xml_safety.quote(str(c14n.get('Algorithm') if c14n is not None else None))}: "
                   "only exclusive or inclusive XML canonicalisation 1.0 is accepted")
    references = signed_info.findall(ds("Reference"))
    if not references:
        raise Stop(AdESFailure.FORMAT_FAILURE, "SignedInfo has no reference")
    properties: list[etree._Element] = []
    covers_data = False
    for reference in references:
        target = _target(reference, index)
        transforms = [t.get("Algorithm") for t in reference.findall(f"{ds('Transforms')}/{ds('Transform')}")]
        refused = [t for t in transforms if t not in REFERENCE_TRANSFORMS]
        if refused:
            raise Stop(AdESFailure.FORMAT_FAILURE, f"the reference {xml_safety.quote(reference.get('URI', ''))} "
                       f"uses the transform {xml_safety.quote(str(refused[0]))}: only exclusive canonicalisation "
                       "and enveloped-signature are accepted")
        if EXC_C14N not in transforms:
            raise Stop(AdESFailure.FORMAT_FAILURE, f"the reference {xml_safety.quote(reference.get('URI', ''))} "
                       "does not name its canonicalisation (an exclusive canonicalisation transform)")
        is_properties = target.tag == xades("SignedProperties")
        if is_properties != (reference.get("Type") == SIGNED_PROPERTIES_TYPE):
            raise Stop(AdESFailure.FORMAT_FAILURE, "a reference to xades:SignedProperties must carry the Type "
                       f"{SIGNED_PROPERTIES_TYPE}, and only such a reference")
        inside = target is element or any(a is element for a in target.iterancestors())
        if is_properties:
            if not inside:
                raise Stop(AdESFailure.FORMAT_FAILURE, "the SignedProperties referenced belong to another signature")
            properties.append(target)
        elif not inside:
            covers_data = True
    if not covers_data:
        raise Stop(AdESFailure.FORMAT_FAILURE, "the signature covers nothing of the document outside itself")
    if len(properties) > 1:
        raise Stop(AdESFailure.FORMAT_FAILURE, "the signature references several SignedProperties")
    signed_properties = properties[0] if properties else None
    qualifying = signed_properties.getparent() if signed_properties is not None else None
    if qualifying is not None and (qualifying.tag != xades("QualifyingProperties")
                                   or qualifying.get("Target") != f"#{element.get('Id')}"):
        raise Stop(AdESFailure.FORMAT_FAILURE, "the QualifyingProperties do not target this signature")
    try:
        key_info_certs = [_cert(t) for t in element.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()",
                                                          namespaces=NS)]
        sig = XmlSignature(element, ident, signed_properties is not None, signed_properties, key_info_certs,
                           ltv.ValidationData([], [], []))
        if qualifying is not None:
            _read_unsigned(sig, qualifying)
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise Stop(AdESFailure.FORMAT_FAILURE, f"a certificate, timestamp or revocation value cannot be read: "
                   f"{type(exc).__name__}") from exc
    return sig


def _target(reference: etree._Element, index: dict[str, list[etree._Element]]) -> etree._Element:
    uri = reference.get("URI")
    match = _SAME_DOCUMENT.fullmatch(uri or "")
    if match is None:
        raise Stop(AdESFailure.FORMAT_FAILURE, f"the reference URI {xml_safety.quote(str(uri))} is not an "
                   "element of this document named by its Id (#id); others are not accepted")
    holders = index.get(match.group(1), [])
    if not holders:
        raise Stop(AdESIndeterminate.SIGNED_DATA_NOT_FOUND, f"no element has the Id {xml_safety.quote(uri)}")
    if len(holders) > 1:
        raise Stop(AdESFailure.FORMAT_FAILURE, f"{len(holders)} elements carry the Id {xml_safety.quote(uri[1:])}: "
                   "which one is signed would depend on the reader (signature wrapping)")
    return holders[0]


def _cert(text: str) -> x509.Certificate:
    return _cert_der(base64.b64decode("".join(text.split()), validate=True))


def _cert_der(der: bytes) -> x509.Certificate:
    cert = x509.Certificate.load(der)
    cert.native  # noqa: B018 - parse it all now
    return cert


def _values(parent: etree._Element, path: str) -> list[bytes]:
    return [base64.b64decode("".join((t or "").split()), validate=True)
            for t in parent.xpath(f"{path}/text()", namespaces=NS)]


def _read_unsigned(sig: XmlSignature, qualifying: etree._Element) -> None:
    unsigned = qualifying.find(f"{xades('UnsignedProperties')}/{xades('UnsignedSignatureProperties')}")
    certs = list(sig.key_info_certs)
    crls: list[crl.CertificateList] = []
    ocsps: list[ocsp.OCSPResponse] = []
    if unsigned is not None:
        value = sig.element.find(ds("SignatureValue"))
        for stamp in unsigned.findall(xades("SignatureTimeStamp")):
            method = stamp.find(ds("CanonicalizationMethod"))
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


def signing_certificate(sig: XmlSignature) -> x509.Certificate:
    """XAdES: the certificate whose digest SigningCertificate(V2) signs; XMLDSig: the first in KeyInfo."""
    candidates = list({c.sha256: c for c in [*sig.key_info_certs, *sig.embedded.certificates]}.values())
    if not sig.xades:
        if not sig.key_info_certs:
            raise Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, "KeyInfo carries no X.509 certificate")
        return sig.key_info_certs[0]
    assert sig.signed_properties is not None
    digest = sig.signed_properties.find(
        "xades:SignedSignatureProperties/xades:SigningCertificateV2/xades:Cert/xades:CertDigest", NS)
    if digest is None:
        digest = sig.signed_properties.find(
            "xades:SignedSignatureProperties/xades:SigningCertificate/xades:Cert/xades:CertDigest", NS)
    if digest is None:
        raise Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND,
                   "the signed properties do not name the signing certificate (SigningCertificateV2)")
    name = DIGESTS.get(str(digest.find(ds("DigestMethod")).get("Algorithm")
                           if digest.find(ds("DigestMethod")) is not None else None))
    try:
        value = base64.b64decode("".join((digest.findtext(ds("DigestValue")) or "").split()), validate=True)
    except binascii.Error:
        value = b""
    for cert in candidates if name else []:
        if hashlib.new(name, cert.dump()).digest() == value:
            return cert
    raise Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, "no certificate in the signature has the digest "
               "that SigningCertificateV2 signs")


def xml_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
