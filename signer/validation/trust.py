"""The trust anchors a validation builds chains to, from files, directories or certificates at hand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import pem, x509

from signer.validation.errors import InvalidTrustStore

_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


@dataclass(frozen=True)
class TrustStore:
    anchors: tuple[x509.Certificate, ...]
    source: str
    """Where the anchors came from, for the report."""


def parse_certificates(data: bytes, where: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, or one DER certificate."""
    try:
        if pem.detect(data):
            return [x509.Certificate.load(der) for kind, _, der in pem.unarmor(data, multiple=True)
                    if kind == "CERTIFICATE"]
        cert = x509.Certificate.load(data)
        cert.native  # noqa: B018 - parse it all now, not halfway through a validation
        return [cert]
    except (ValueError, TypeError) as exc:
        raise InvalidTrustStore(f"{where} holds no readable certificate: {type(exc).__name__}") from exc


def load_trust_store(*paths: Path) -> TrustStore:
    """Anchors from PEM or DER files, or directories of them (``*.pem``, ``*.crt``, ``*.cer``, ``*.der``)."""
    anchors: dict[bytes, x509.Certificate] = {}
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _CERT_SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise InvalidTrustStore(f"no such trust store: {path}")
        for file in files:
            for cert in parse_certificates(file.read_bytes(), str(file)):
                anchors.setdefault(cert.sha256, cert)
    if not anchors:
        raise InvalidTrustStore(f"no certificate in the trust store {', '.join(map(str, paths))}")
    return TrustStore(tuple(anchors.values()), ", ".join(str(p) for p in paths))


def trust_store_of(certificates: Iterable[x509.Certificate], source: str) -> TrustStore:
    return TrustStore(tuple({c.sha256: c for c in certificates}.values()), source)
