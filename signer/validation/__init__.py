"""One validation core for any signed document: PDF (PAdES, other PDF signatures, document
timestamps), CMS (CAdES, detached or enveloping) and XML (XAdES, XMLDSig), made by kyso or by anyone else.

The verdict of each signature follows ETSI EN 319 102-1 through pyHanko's AdES procedures: the
basic validation for a signature without a timestamp, validation with time when a signature
timestamp gives a proof of existence, the long-term procedure for a PDF with document timestamps.
Revocation data is required for every certificate of a chain (hard-fail): taken from the document
(DSS, CMS ``crls``, XAdES RevocationValues), else fetched when the caller allows it, else the answer
is TRY_LATER. What pyHanko knows but does not fold into the indication (PDF changes after signing, a
signature's coverage) is applied here, as EU DSS does. Nothing here touches the HSM or a database.

``validate_file`` is the entry point; the report it returns is ``signer.validation_report``'s.
"""

from signer.errors import InvalidDocument
from signer.validation.document import validate_file
from signer.validation.errors import ContentRequired, EncryptedDocument, InvalidTrustStore, NotSigned
from signer.validation.policy import ValidationOptions
from signer.validation.trust import TrustStore, load_trust_store, parse_certificates, trust_store_of
from signer.validation_report import ValidationReport

__all__ = [
    "ContentRequired",
    "EncryptedDocument",
    "InvalidDocument",
    "InvalidTrustStore",
    "NotSigned",
    "TrustStore",
    "ValidationOptions",
    "ValidationReport",
    "load_trust_store",
    "parse_certificates",
    "trust_store_of",
    "validate_file",
]
