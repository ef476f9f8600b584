"""Baseline levels above B-B: signature timestamps (B-T) and validation data (B-LT, B-LTA).

The TSA is reached over RFC 3161 HTTP (pyHanko's client); OCSP responses and CRLs are fetched
from the URLs in the certificates by pyHanko's certificate validator, in hard-fail mode, so a
revoked certificate or missing revocation data stops the signature instead of weakening it.
pyHanko embeds such data only in PDFs: for CMS the values go into the SignedData's ``certificates`` and ``crls``
(OCSP responses as ``id-ri-ocsp-response`` other revocation info).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from asn1crypto import cms, crl, ocsp, x509
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathBuildingError, PathValidationError, RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from signer.errors import CertificateRevoked, SignerError


class Level(str, enum.Enum):
    """ETSI baseline levels (EN 319 122-1 for CAdES, EN 319 142-1 for PAdES)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)


def parse_level(value: str, *, allowed: Iterable[Level] = tuple(Level)) -> Level:
    try:
        level = Level(value.upper().replace("_", "-"))
    except ValueError:
        level = None
    allowed = tuple(allowed)
    if level is None or level not in allowed:
        raise UnsupportedLevel(f"level is one of {', '.join(a.value for a in allowed)}, not {value!r}")
    return level


class UnsupportedLevel(SignerError):
    code = "unsupported_level"


class TimestampUnavailable(SignerError):
    """The TSA did not answer, or answered with an error."""

    code = "timestamp_unavailable"


class RevocationUnavailable(SignerError):
    """OCSP or CRL data could not be fetched or does not cover the chain (hard-fail)."""

    code = "revocation_unavailable"


@dataclass(frozen=True)
class LongTermServices:
    """Where timestamps come from and what validation data is checked against."""

    tsa_url: str | None
    trust_roots: Sequence[x509.Certificate]
    timeout: int = 10

    def timestamper(self) -> TimeStamper:
        if not self.tsa_url:
            raise TimestampUnavailable("no TSA is configured for this credential's provider")
        return HTTPTimeStamper(self.tsa_url, timeout=self.timeout)

    @asynccontextmanager
    async def fetching_context(self, other_certs: Iterable[x509.Certificate] = ()) -> AsyncIterator[ValidationContext]:
        """A hard-fail validation context that fetches OCSP and CRLs; its HTTP session closed after."""
        backend = AIOHttpFetcherBackend(per_request_timeout=self.timeout)
        try:
            yield ValidationContext(trust_roots=list(self.trust_roots), other_certs=list(other_certs),
                                    allow_fetching=True, revocation_mode="hard-fail", fetcher_backend=backend)
        finally:
            await backend.close()


async def timestamp_token(data: bytes, services: LongTermServices) -> cms.ContentInfo:
    """A timestamp token over SHA-256(``data``)."""
    try:
        return await services.timestamper().async_timestamp(hashlib.sha256(data).digest(), "sha256")
    except (TimestampRequestError, OSError, ValueError) as exc:
        raise TimestampUnavailable(f"the TSA did not give a timestamp: {type(exc).__name__}") from exc


def signature_timestamp_attrs(token: cms.ContentInfo) -> bytes:
    """DER ``SET OF Attribute`` holding one signature-time-stamp-token (the unsigned attributes)."""
    return cms.CMSAttributes([cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]})]).dump()


def token_certificates(token: cms.ContentInfo) -> list[x509.Certificate]:
    return [c.chosen for c in token["content"]["certificates"] or [] if c.name == "certificate"]


@dataclass(frozen=True)
class ValidationData:
    certificates: list[x509.Certificate]
    crls: list[crl.CertificateList]
    ocsps: list[ocsp.OCSPResponse]


async def collect_validation_data(
    signer: x509.Certificate, chain: Sequence[x509.Certificate], services: LongTermServices,
    timestamp: cms.ContentInfo | None = None,
) -> ValidationData:
    """Validate the signer's (and the TSA's) path now, fetching revocation data; hard-fail."""
    tsa_certs = token_certificates(timestamp) if timestamp is not None else []
    async with services.fetching_context([*chain, *tsa_certs]) as context:
        paths = [await _validate(signer, context, {"digital_signature"}, None)]
        if timestamp is not None:
            sid = timestamp["content"]["signer_infos"][0]["sid"].chosen
            tsa_cert = next((c for c in tsa_certs if c.issuer_serial == _issuer_serial(sid)), None)
            if tsa_cert is None:
                raise TimestampUnavailable("the timestamp token does not carry its TSA's certificate")
            paths.append(await _validate(tsa_cert, context, set(), {"time_stamping"}))
        certificates: dict[bytes, x509.Certificate] = {}
        for path in paths:
            for cert in path:
                certificates.setdefault(cert.sha256, cert)
        return ValidationData(list(certificates.values()), list(context.crls), list(context.ocsps))


def _issuer_serial(sid: cms.IssuerAndSerialNumber) -> bytes:
    """The same key as asn1crypto's ``Certificate.issuer_serial``."""
    return sid["issuer"].sha256 + b":" + str(sid["serial_number"].native).encode("ascii")


async def _validate(cert: x509.Certificate, context: ValidationContext, key_usage: set[str],
                    extended_key_usage: set[str] | None) -> list[x509.Certificate]:
    validator = CertificateValidator(cert, validation_context=context)
    try:
        path = await validator.async_validate_usage(key_usage, extended_key_usage)
    except RevokedError as exc:
        raise CertificateRevoked(f"the certificate of {cert.subject.human_friendly} is revoked") from exc
    except InsufficientRevinfoError as exc:
        raise RevocationUnavailable(f"no usable revocation data for {cert.subject.human_friendly}: {exc}") from exc
    except (PathBuildingError, PathValidationError) as exc:
        raise RevocationUnavailable(f"the chain of {cert.subject.human_friendly} does not validate: {exc}") from exc
    return list(path)


def add_validation_data(content_info_der: bytes, data: ValidationData) -> bytes:
    """The CMS with the chain's certificates and revocation values added (CAdES B-LT)."""
    info = cms.ContentInfo.load(content_info_der)
    signed_data = info["content"]
    present = {c.chosen.sha256 for c in signed_data["certificates"] or [] if c.name == "certificate"}
    certs = list(signed_data["certificates"] or [])
    certs += [cms.CertificateChoices(name="certificate", value=c) for c in data.certificates if c.sha256 not in present]
    revocation = [cms.RevocationInfoChoice(name="crl", value=c) for c in data.crls]
    revocation += [cms.RevocationInfoChoice(name="other", value=cms.OtherRevocationInfoFormat(
        {"other_rev_info_format": "ocsp_response", "other_rev_info": o})) for o in data.ocsps]
    signed_data["certificates"] = certs
    signed_data["crls"] = revocation
    return info.dump(force=False)


def embedded_validation_data(signed_data: cms.SignedData) -> ValidationData:
    """What a CMS carries for offline validation: its certificates, those of its timestamps, CRLs, OCSP."""
    certs = [c.chosen for c in signed_data["certificates"] or [] if c.name == "certificate"]
    for signer_info in signed_data["signer_infos"]:
        for attr in signer_info["unsigned_attrs"] or []:
            if attr["type"].native == "signature_time_stamp_token":
                certs += [c for token in attr["values"] for c in token_certificates(token)]
    crls, ocsps = [], []
    for choice in signed_data["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen)
        elif choice.name == "other" and choice.chosen["other_rev_info_format"].native == "ocsp_response":
            ocsps.append(choice.chosen["other_rev_info"])
    return ValidationData(certs, crls, ocsps)
