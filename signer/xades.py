"""XAdES baseline signatures (ETSI EN 319 132-1) enveloped in the signed XML, B-B to B-LT.

The treasury's and e-document XML carry their signatures inside: the data element is referenced by
its Id (``URI="#data"``) and each signer's ``ds:Signature`` goes into a container the caller names,
outside the data, so a second signer adds a signature without touching what the first one signed.

Built in two pure phases so that a confirmation can sit between them, like ``cades``: ``prepare``
places the signature with everything but its value and returns the SHA-256 of the canonical
``SignedInfo`` (what the key signs); ``finish`` checks a signature value against the certificate,
inserts it and, at B-T and B-LT, adds the unsigned properties.

signxml builds the signature: references and their digests, ``KeyInfo``, the signed properties
(SigningTime, SigningCertificateV2, DataObjectFormat, ClaimedRole), through ``signer.xades_builder``,
which works around what it cannot do for two phases. The rest is written here:

* it places a signature only where a ``ds:Signature Id="placeholder"`` element already is;
  placement (a safe XPath subset) and the document checks are ``signer.xml_safety``'s;
* it has no SignatureTimeStamp, CertificateValues or RevocationValues (B-T, B-LT): written here
  over ``signer.ltv``'s TSA and revocation fetching.

Validation (any XMLDSig or XAdES, kyso's or not) is ``verify`` here, done in ``signer.validation.xml``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree

from signer import aio, ltv, xml_safety
from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme
from signer.errors import InvalidDocument, SignerError, UnsupportedAlgorithm
from signer.keysigner import KeySigner
from signer.validation import xml as xml_validation
from signer.xades_builder import DS_NS, EXC_C14N, XADES_NS, Builder, DeferredKey, b64, c14n, ds_name, xades_name

HASH_NAME = "sha256"
_NSMAP = {"ds": DS_NS, "xades": XADES_NS}
_PLACEHOLDER = "placeholder"  # signxml's marker for where an enveloped signature goes
PSS = PssParams(HASH_NAME, DIGEST_SIZES[HASH_NAME])


class InvalidSignatureValue(SignerError):
    """A signature value that does not verify over the prepared ``SignedInfo`` with the certificate's key."""

    code = "invalid_signature_value"


@dataclass(frozen=True)
class XadesOptions:
    reference_id: str
    """The Id of the element signed (``URI="#id"``)."""
    placement: str
    """Where the ``ds:Signature`` is appended: ``/Hoso/CKy_Dvi``, ``//Cky``, ``DSCKS/NBan``."""
    signing_time: datetime | None = None
    claimed_role: str | None = None
    """e.g. ``Kế toán trưởng``, signed as ``xades:ClaimedRole``."""
    description: str = "Signed XML data"
    max_bytes: int = xml_safety.MAX_DOCUMENT_BYTES
    max_depth: int = xml_safety.MAX_DEPTH


@dataclass(frozen=True)
class PreparedXml:
    """A placed signature waiting for its value: what ``finish`` needs, and what the signer approves."""

    document: bytes
    """The document with the signature in place and an empty ``SignatureValue``."""
    signature_id: str
    dtbs_digest: bytes
    """SHA-256 of the canonical ``SignedInfo``: the digest the key signs."""
    document_digest: bytes
    """SHA-256 of the document as given."""
    data_digest: bytes
    """SHA-256 of the canonical signed element, as its reference carries it."""
    reference_id: str
    placement: str
    signed_element: str
    """The signed element's local name."""
    data_preview: str
    """The start of the signed element's text, for the approval screen."""
    signing_time: datetime
    scheme: SignatureScheme
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    hash_name: str = HASH_NAME
    pss: PssParams | None = field(default=None)


@lru_cache(maxsize=256)
def _crypto_cert(der: bytes) -> cx509.Certificate:
    return cx509.load_der_x509_certificate(der)


def _new_id(prefix: str, taken: dict[str, etree._Element]) -> str:
    while True:
        value = f"{prefix}-{secrets.token_hex(6)}"
        if value not in taken:
            return value


PREVIEW_CHARS = 1000


def _preview(element: etree._Element) -> str:
    text = " ".join(" ".join(element.itertext()).split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def prepare(
    document: bytes,
    certificate: x509.Certificate,
    chain: tuple[x509.Certificate, ...] | list[x509.Certificate] = (),
    scheme: SignatureScheme | None = None,
    options: XadesOptions | None = None,
) -> PreparedXml:
    """Place a signature over ``options.reference_id`` at ``options.placement``; its value left to the key."""
    if options is None:
        raise InvalidDocument("an XML signature needs the reference Id and placement (XadesOptions)")
    scheme = scheme or (SignatureScheme.ECDSA if certificate.public_key.algorithm == "ec" else SignatureScheme.RSA_PKCS1_V15)
    if (scheme is SignatureScheme.ECDSA) != (certificate.public_key.algorithm == "ec"):
        raise UnsupportedAlgorithm(f"{scheme.value} does not fit this {certificate.public_key.algorithm} key")
    tree = xml_safety.parse(document, max_bytes=options.max_bytes, max_depth=options.max_depth)
    index = xml_safety.id_index(tree)
    signed = xml_safety.referenced_element(index, options.reference_id)
    container = xml_safety.find_placement(tree, options.placement)
    xml_safety.check_placement(container, signed, options.placement)
    if _PLACEHOLDER in index:
        raise xml_safety.DuplicateId(f"the document already uses the Id {_PLACEHOLDER!r}, which marks a new signature")
    ids = {name: _new_id(prefix, index) for name, prefix in
           (("signature", "xades-sig"), ("key_info", "xades-keyinfo"), ("reference", "xades-ref"))}
    when = (options.signing_time or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    etree.SubElement(container, ds_name("Signature"), nsmap=_NSMAP, Id=_PLACEHOLDER)
    key = DeferredKey(certificate.public_key.bit_size, scheme)
    certs = [_crypto_cert(c.dump()) for c in (certificate, *chain)]
    root = Builder(scheme, ids, when, options.claimed_role, options.description).sign(
        tree, key=key, cert=certs, reference_uri=f"#{options.reference_id}", always_add_key_value=False)
    signature = _signature(root.getroottree(), ids["signature"])
    for element in signature.iter(etree.Element):  # signxml names SignedProperties after the signature's Id
        if element.get("Id") in index:
            raise xml_safety.DuplicateId(f"the new signature's Id {element.get('Id')!r} is taken in the document")
    signature.find(ds_name("SignatureValue")).text = ""
    signed_info = c14n(signature.find(ds_name("SignedInfo")))
    if signed_info != key.signed_info:  # what signxml would have signed is what we hand to the key
        raise InvalidDocument("the canonical SignedInfo changed after it was built")
    data_reference = signature.find(f"{ds_name('SignedInfo')}/{ds_name('Reference')}")
    return PreparedXml(
        document=etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8"),
        signature_id=ids["signature"],
        dtbs_digest=hashlib.sha256(signed_info).digest(),
        document_digest=hashlib.sha256(document).digest(),
        data_digest=base64.b64decode(data_reference.findtext(ds_name("DigestValue"))),
        reference_id=options.reference_id,
        placement=options.placement,
        signed_element=etree.QName(signed).localname,
        data_preview=_preview(signed),
        signing_time=when,
        scheme=scheme,
        certificate=certificate,
        chain=tuple(chain),
        pss=PSS if scheme is SignatureScheme.RSA_PSS else None,
    )


def _signature(tree: etree._ElementTree, signature_id: str) -> etree._Element:
    found = [e for e in tree.getroot().iter(ds_name("Signature")) if e.get("Id") == signature_id]
    if len(found) != 1:
        raise InvalidDocument(f"the prepared document does not hold the signature {signature_id!r} once")
    return found[0]


def signature_value(prepared: PreparedXml, signature: bytes) -> bytes:
    """The XMLDSig ``SignatureValue`` octets for a key's signature (ECDSA: DER to r‖s), checked
    against the certificate's key over the prepared ``SignedInfo`` digest."""
    public_key = _crypto_cert(prepared.certificate.dump()).public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, prepared.dtbs_digest, ec.ECDSA(prehashed))
            r, s = utils.decode_dss_signature(signature)
            size = (public_key.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise UnsupportedAlgorithm("XML signatures are made with RSA or EC keys")
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
        if prepared.scheme is SignatureScheme.RSA_PSS:
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS.salt_length)
        public_key.verify(signature, prepared.dtbs_digest, pad, prehashed)
        return signature
    except (InvalidSignature, ValueError) as exc:
        raise InvalidSignatureValue(
            "the signature value does not verify with the certificate's key over the prepared SignedInfo") from exc


async def async_finish(
    prepared: PreparedXml,
    signature: bytes,
    level: ltv.Level = ltv.Level.B_B,
    services: ltv.LongTermServices | None = None,
    *,
    accept_lower: bool = False,
) -> tuple[bytes, ltv.Level]:
    """The signed document at ``level`` (B-T adds a signature timestamp, B-LT the validation data); the level reached.

    With ``accept_lower`` a TSA or revocation outage gives the highest level reached instead of
    an error; a revoked certificate is always an error.
    """
    tree, element, value_element = _place_value(prepared, signature, level)
    reached = await _unsigned_properties(prepared, element, value_element, level, services, accept_lower)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8"), reached


def _place_value(prepared: PreparedXml, signature: bytes,
                 level: ltv.Level) -> tuple[etree._ElementTree, etree._Element, etree._Element]:
    """The prepared document re-read, its SignedInfo checked, the signature value in place."""
    if level is ltv.Level.B_LTA:
        raise ltv.UnsupportedLevel("XAdES is signed up to B-LT here; archive timestamps are not built")
    value = signature_value(prepared, signature)
    # Our own output: the caller's limits were applied to the document it came from.
    tree = xml_safety.parse(prepared.document, max_bytes=len(prepared.document), max_depth=256)
    element = _signature(tree, prepared.signature_id)
    if hashlib.sha256(c14n(element.find(ds_name("SignedInfo")))).digest() != prepared.dtbs_digest:
        raise InvalidDocument("the prepared document's SignedInfo does not match the digest that was signed")
    value_element = element.find(ds_name("SignatureValue"))
    value_element.text = b64(value)
    return tree, element, value_element


async def _unsigned_properties(prepared: PreparedXml, signature: etree._Element, value_element: etree._Element,
                               level: ltv.Level, services: ltv.LongTermServices | None,
                               accept_lower: bool) -> ltv.Level:
    if level is ltv.Level.B_B:
        return ltv.Level.B_B
    try:
        if services is None:
            raise ltv.TimestampUnavailable("no TSA is configured")
        # EN 319 132-1 5.3: the time-stamp covers the canonicalised ds:SignatureValue element.
        token = await ltv.timestamp_token(c14n(value_element), services)
    except ltv.TimestampUnavailable:
        if not accept_lower:
            raise
        return ltv.Level.B_B
    qualifying = signature.find(f"{ds_name('Object')}/{xades_name('QualifyingProperties')}")
    unsigned = etree.SubElement(etree.SubElement(qualifying, xades_name("UnsignedProperties")),
                                xades_name("UnsignedSignatureProperties"))
    stamp = etree.SubElement(unsigned, xades_name("SignatureTimeStamp"), Id=f"{prepared.signature_id}-ts")
    etree.SubElement(stamp, ds_name("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(stamp, xades_name("EncapsulatedTimeStamp")).text = b64(token.dump())
    if not level.long_term:
        return ltv.Level.B_T
    try:
        data = await ltv.collect_validation_data(prepared.certificate, prepared.chain, services, token)
    except ltv.RevocationUnavailable:
        if not accept_lower:
            raise
        return ltv.Level.B_T
    _add_validation_data(unsigned, data, {c.sha256 for c in (prepared.certificate, *prepared.chain)})
    return ltv.Level.B_LT


def _add_validation_data(unsigned: etree._Element, data: ltv.ValidationData, in_key_info: set[bytes]) -> None:
    """CertificateValues (the paths' certificates not already in KeyInfo) and RevocationValues."""
    certificates = [c for c in data.certificates if c.sha256 not in in_key_info]
    if certificates:
        values = etree.SubElement(unsigned, xades_name("CertificateValues"))
        for cert in certificates:
            etree.SubElement(values, xades_name("EncapsulatedX509Certificate")).text = b64(cert.dump())
    if data.crls or data.ocsps:
        revocation = etree.SubElement(unsigned, xades_name("RevocationValues"))
        if data.crls:  # the schema's order: CRLValues, then OCSPValues
            crls = etree.SubElement(revocation, xades_name("CRLValues"))
            for crl in data.crls:
                etree.SubElement(crls, xades_name("EncapsulatedCRLValue")).text = b64(crl.dump())
        if data.ocsps:
            ocsps = etree.SubElement(revocation, xades_name("OCSPValues"))
            for response in data.ocsps:
                etree.SubElement(ocsps, xades_name("EncapsulatedOCSPValue")).text = b64(response.dump())


def finish(prepared: PreparedXml, signature: bytes, level: ltv.Level = ltv.Level.B_B,
           services: ltv.LongTermServices | None = None) -> bytes:
    """:func:`async_finish` without a running event loop: the signed document, bytes."""
    if level is ltv.Level.B_B:  # nothing to fetch: no event loop to start
        return etree.tostring(_place_value(prepared, signature, level)[0], xml_declaration=True, encoding="UTF-8")
    return aio.run(async_finish(prepared, signature, level, services))[0]


def verify(document: bytes, options: Any) -> list[Any]:
    """A verdict (``signer.validation_report.SignatureVerdict``) for every signature of the XML ``document``,
    with ``options`` a ``signer.validation.ValidationOptions``: trust anchors, time, fetching."""
    return xml_validation.verify(document, options)


def sign(key: KeySigner, document: bytes, options: XadesOptions, *, level: ltv.Level = ltv.Level.B_B,
         services: ltv.LongTermServices | None = None) -> bytes:
    """Prepare, sign in the key's home and finish at ``level``: the document with one more signature."""
    prepared = prepare(document, key.certificate, key.chain, key.scheme, options)
    signature = key.sign(prepared.dtbs_digest, HASH_NAME, pss=prepared.pss)
    return finish(prepared, signature, level, services)
