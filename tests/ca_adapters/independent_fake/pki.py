"""The fake's own PKI: a root, an issuing CA, the signer's certificate and an organisation seal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Independent Fake (TEST)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey,
           *, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer else _name(subject)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=730 if ca else 365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """A root, an issuing CA under it, and the signer's key and certificate (plus an organisation seal)."""

    root_key: rsa.RSAPrivateKey
    root: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    ca: x509.Certificate
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    seal_key: rsa.RSAPrivateKey
    seal: x509.Certificate

    @classmethod
    def make(cls, signer: str) -> Pki:
        keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(4)]
        root = _issue("Fake Root CA", keys[0], None, keys[0], ca=True)
        ca = _issue("Fake Issuing CA", keys[1], root, keys[0], ca=True)
        return cls(keys[0], root, keys[1], ca, keys[2], _issue(signer, keys[2], ca, keys[1], ca=False),
                   keys[3], _issue(f"{signer} (seal)", keys[3], ca, keys[1], ca=False))

    @staticmethod
    def der(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def sign(self, digest: bytes) -> bytes:
        """PKCS#1 v1.5 over a SHA-256 digest it was given (not over the digest's own hash)."""
        return self.key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
