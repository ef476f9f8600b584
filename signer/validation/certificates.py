"""The certificates a CMS signature carries, and how the report describes a certificate."""

from __future__ import annotations

from asn1crypto import cms, x509

from signer.validation_report import CertificateInfo


def signer_cert(signed_data: cms.SignedData) -> x509.Certificate | None:
    try:
        sid = signed_data["signer_infos"][0]["sid"]
        for cert in embedded_certs(signed_data):
            if sid.name == "issuer_and_serial_number":
                if cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native:
                    return cert
            elif cert.key_identifier == sid.chosen.native:
                return cert
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return None


def embedded_certs(signed_data: cms.SignedData) -> list[x509.Certificate]:
    try:
        return [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
    except (ValueError, TypeError):
        return []


def cert_info(cert: x509.Certificate, *, anchor: bool = False) -> CertificateInfo:
    validity = cert["tbs_certificate"]["validity"]
    return CertificateInfo(subject=cert.subject.human_friendly, issuer=cert.issuer.human_friendly,
                           serial=format(cert.serial_number, "x"), not_before=validity["not_before"].native,
                           not_after=validity["not_after"].native, sha256=cert.sha256.hex(), trust_anchor=anchor)


def chain_problem(cert: x509.Certificate, available: list[x509.Certificate]) -> str:
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
