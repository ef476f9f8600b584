"""pyHanko's sub-indications in the report's words: the indication, a sentence for each, and the reasons."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pyhanko.sign.ades.report import AdESIndeterminate, AdESStatus, AdESSubIndic

from signer.validation_report import Indication

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


def indication_of(sub: AdESSubIndic) -> Indication:
    return {AdESStatus.PASSED: Indication.TOTAL_PASSED, AdESStatus.FAILED: Indication.TOTAL_FAILED,
            AdESStatus.INDETERMINATE: Indication.INDETERMINATE}[sub.status]


def try_later(sub: AdESSubIndic, errors: Collection[str]) -> AdESSubIndic:
    """A chain failing only for want of revocation data: EN 319 102-1 § 5.2.6, the status cannot be
    determined yet."""
    if sub is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and "InsufficientRevinfoError" in errors:
        return AdESIndeterminate.TRY_LATER
    return sub


def classic_indication(status: Any) -> tuple[Indication, str | None, str | None]:
    """A timestamp's indication, sub-indication and reason from pyHanko's status (intact, valid, trusted)."""
    if not status.intact:
        return Indication.TOTAL_FAILED, "HASH_FAILURE", "the timestamped data does not match its imprint"
    if not status.valid:
        return Indication.TOTAL_FAILED, "SIG_CRYPTO_FAILURE", "the TSA's signature does not verify"
    if not status.trusted:
        sub = status.trust_problem_indic.standard_name if status.trust_problem_indic else "NO_CERTIFICATE_CHAIN_FOUND"
        return (Indication.TOTAL_FAILED if sub == "REVOKED" else Indication.INDETERMINATE, sub,
                f"the TSA's certificate does not validate to the trust store ({EXPLANATIONS.get(sub, sub)})")
    return Indication.TOTAL_PASSED, None, None


def plain_message(message: str) -> str:
    """pyHanko's warning without its bracketed context prefix."""
    return message.split("]: ", 1)[-1] if message.startswith("Validation error [") else message


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
