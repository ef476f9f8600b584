"""The cryptography of one XML signature, by signxml: told which signature to check and left off the clock.

signxml's ``XAdESVerifier`` (``XMLVerifier`` for a plain XMLDSig) checks each reference's digest after
its transforms, the ``SignatureValue`` over the canonical ``SignedInfo`` with the signing certificate's
key (RSA PKCS#1 v1.5, RSA-PSS with MGF1, ECDSA as r‖s), the signature against the schema, and the
SigningCertificate(V2) digest. It is given the signing certificate, so its own chain check (one CA
file, the current clock, no revocation) is not used. It looks for a signature at one fixed path, and
checks the certificate's validity period against the current clock, which would refuse what a
timestamp proves was signed while the certificate was valid: both are overridden here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509 as cx509
from lxml import etree
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from signxml import XMLVerifier
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier, XAdESVerifyResult

from signer.validation.xml_signature import NS, Stop, XmlSignature, ds, xml_time


def _parser() -> etree.XMLParser:
    """For signxml's internal copies of an already safely parsed tree: the same locks, all the same."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           attribute_defaults=False, huge_tree=False)


class _Positioned:
    """The n-th ``ds:Signature`` of the document (signxml's copies keep the order); no validity-period check."""

    position: int

    def _get_signature(self, root: etree._Element) -> etree._Element:
        found = list(root.iter(ds("Signature")))
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


def verify_crypto(root: etree._Element, position: int, sig: XmlSignature) -> datetime | None:
    """signxml's checks: references, SignatureValue, schema, signing certificate digest; the claimed time."""
    assert sig.signing_cert is not None
    verifier = _XadesVerifier(position) if sig.xades else _DsigVerifier(position)
    config = XAdESSignatureConfiguration(expect_references=True)
    try:
        results = verifier.verify(root, x509_cert=cx509.load_der_x509_certificate(sig.signing_cert.dump()),
                                  parser=_parser(), expect_config=config)
    except InvalidDigest as exc:
        if "reference" in str(exc):
            raise Stop(AdESFailure.HASH_FAILURE, str(exc)) from exc
        raise Stop(AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND, str(exc)) from exc
    except InvalidCertificate as exc:
        raise Stop(AdESFailure.FORMAT_FAILURE, str(exc)) from exc
    except InvalidSignature as exc:
        raise Stop(AdESFailure.SIG_CRYPTO_FAILURE, str(exc)) from exc
    except InvalidInput as exc:
        if "forbidden by configuration" in str(exc):
            raise Stop(AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE, str(exc)) from exc
        raise Stop(AdESFailure.FORMAT_FAILURE, str(exc)) from exc
    except (SignXMLException, etree.DocumentInvalid, etree.LxmlError, ValueError, TypeError, KeyError) as exc:
        raise Stop(AdESFailure.FORMAT_FAILURE, f"{type(exc).__name__}: {exc}") from exc
    if not sig.xades:
        return None
    verified = next(r for r in results if isinstance(r, XAdESVerifyResult))
    return xml_time(verified.signed_properties.findtext("xades:SigningTime", namespaces=NS))
