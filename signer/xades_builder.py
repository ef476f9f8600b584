"""signxml's XAdES signer bent to kyso's two phases, and the XML helpers both share.

What signxml cannot do and is done here:

* it signs inside ``XMLSigner.sign`` with a private key object, with no way to stop at the data to
  be signed; a stand-in key (:class:`DeferredKey`) records the canonical ``SignedInfo`` and returns
  a placeholder that ``finish`` replaces with the HSM's value;
* it digests the ``SignedProperties`` and ``KeyInfo`` references with exclusive canonicalisation but
  does not say so in a ``Transform``, and verifiers then apply the default inclusive one (their
  digests break as soon as an ancestor declares a namespace): those references get the transform;
* it copies the document through an ASCII serialisation, which turns non-ASCII text in comments
  into literal character references, and it stamps SigningTime with the clock: the builder works on
  the safely parsed tree itself and takes the signing time given.

The subclass leans on signxml 5's annotator methods; the dependency is pinned to 5.x for that.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives.asymmetric import utils
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.xades import XAdESDataObjectFormat, XAdESSigner

from signer import xml_safety
from signer.algorithms import SignatureScheme

DS_NS = xml_safety.DS_NS
XADES_NS = "http://uri.etsi.org/01903/v1.3.2#"
EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value

_SIGNATURE_METHODS = {
    SignatureScheme.RSA_PKCS1_V15: SignatureMethod.RSA_SHA256,
    SignatureScheme.RSA_PSS: SignatureMethod.SHA256_RSA_MGF1,  # MGF1-SHA-256, salt 32 (RFC 9231 2.3.10)
    SignatureScheme.ECDSA: SignatureMethod.ECDSA_SHA256,
}


def ds_name(tag: str) -> str:
    return f"{{{DS_NS}}}{tag}"


def xades_name(tag: str) -> str:
    return f"{{{XADES_NS}}}{tag}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def c14n(node: etree._Element) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


def _xml_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeferredKey:
    """Stands in for the private key inside signxml: records what it would sign, signs nothing."""

    def __init__(self, key_size: int, scheme: SignatureScheme) -> None:
        self.key_size = key_size
        self._scheme = scheme
        self.signed_info: bytes | None = None

    def sign(self, data: bytes, *_: Any, **__: Any) -> bytes:
        self.signed_info = data
        if self._scheme is SignatureScheme.ECDSA:
            return utils.encode_dss_signature(1, 1)  # signxml converts DER to r‖s before we blank it
        return b"\0"


class Builder(XAdESSigner):
    """signxml's XAdES signer with kyso's Ids and signing time, and explicit reference transforms."""

    def __init__(self, scheme: SignatureScheme, ids: dict[str, str], signing_time: datetime,
                 claimed_role: str | None, description: str) -> None:
        super().__init__(
            claimed_roles=[claimed_role] if claimed_role else None,
            data_object_format=XAdESDataObjectFormat(Description=description, MimeType="text/xml"),
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=_SIGNATURE_METHODS[scheme],
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        self._ids = ids
        self._signing_time = signing_time

    def get_root(self, data: Any) -> etree._Element:
        # The document itself, not signxml's re-parsed copy: it is already parsed safely, and
        # its copy goes through ASCII, turning non-ASCII text in comments into literal "&#7913;".
        if isinstance(data, etree._ElementTree):
            return data.getroot()
        return super().get_root(data)

    def _tostring(self, xml_node: etree._Element, **kwargs: Any) -> bytes:
        kwargs.setdefault("encoding", "UTF-8")
        return etree.tostring(xml_node, **kwargs)

    def _build_xades_ds_object(self, sig_root: etree._Element, signing_settings: Any) -> None:
        # signxml keeps Ids that are already set: ours are checked against the document's.
        sig_root.set("Id", self._ids["signature"])
        self._find(sig_root, "KeyInfo").set("Id", self._ids["key_info"])
        self._find(self._find(sig_root, "SignedInfo"), "Reference").set("Id", self._ids["reference"])
        super()._build_xades_ds_object(sig_root, signing_settings)

    def _add_reference_to_signed_info(self, sig_root: etree._Element, node_to_reference: etree._Element,
                                      **attrs: str) -> None:
        signed_info = self._find(sig_root, "SignedInfo")
        reference = etree.SubElement(signed_info, ds_name("Reference"), URI=f"#{node_to_reference.get('Id')}", **attrs)
        transforms = etree.SubElement(reference, ds_name("Transforms"))
        etree.SubElement(transforms, ds_name("Transform"), Algorithm=EXC_C14N)
        etree.SubElement(reference, ds_name("DigestMethod"), Algorithm=self.digest_alg.value)
        etree.SubElement(reference, ds_name("DigestValue")).text = b64(self._digest(node_to_reference))

    def _digest(self, node: etree._Element) -> bytes:
        return hashlib.sha256(c14n(node)).digest()

    def add_signing_time(self, signed_signature_properties: etree._Element, sig_root: etree._Element,
                         signing_settings: Any) -> None:
        etree.SubElement(signed_signature_properties, xades_name("SigningTime")).text = _xml_time(self._signing_time)
