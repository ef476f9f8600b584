"""A test national root and one issuing CA per provider, kept in a directory.

The issuing CAs issue at run time, so each keeps its own record of issued serials (certomancer serves
only what its configuration declares) from which revocation status is answered. Private keys of this test PKI are
files with mode 0600: it is an emulator, never a production CA.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ca_adapters.base import (
    CertificateProfile,
    CertificateStatus,
    CertificateUnknown,
    EnrollmentRefused,
    IssuedCertificate,
    NameAttribute,
    RevocationReason,
    Subject,
)

ROOT_NAME = (
    NameAttribute("C", "VN"),
    NameAttribute("O", "Ministry of Information and Communications"),
    NameAttribute("OU", "National Centre of Digital Signature Authentication"),
    NameAttribute("CN", "Vietnam National Root CA (TEST)"),
)

_OIDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "UID": NameOID.USER_ID,
    "E": NameOID.EMAIL_ADDRESS,
}
_EKUS = {
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
}
EMULATOR_HOST = "127.0.0.1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((EMULATOR_HOST, 0))
        return int(sock.getsockname()[1])


def _crl_distribution(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)]
    )


def _ocsp_access(base_url: str) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess([
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(f"{base_url}/ocsp")),
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                               x509.UniformResourceIdentifier(f"{base_url}/ca.cer")),
    ])


def x509_name(attrs: tuple[NameAttribute, ...]) -> x509.Name:
    return x509.Name([x509.NameAttribute(_OIDS[a.kind], a.value) for a in attrs])


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _ca_extensions(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey, path_len: int | None) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


class TestPki:
    """The root and issuing CAs under one directory (``DATA_DIR/pki``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def root_cert_path(self) -> Path:
        return self.directory / "root" / "cert.pem"

    def ensure_root(self) -> x509.Certificate:
        if self.root_cert_path.exists():
            return x509.load_pem_x509_certificate(self.root_cert_path.read_bytes())
        root_dir = self.root_cert_path.parent
        root_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        name = x509_name(ROOT_NAME)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365 * 15))
        )
        cert = _ca_extensions(builder, key, None).sign(key, hashes.SHA256())
        _write_private(root_dir / "key.pem", _key_pem(key))
        self.root_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def issuing_ca(self, profile: CertificateProfile) -> IssuingCa:
        ca = IssuingCa(self.directory / profile.provider, profile)
        if not ca.cert_path.exists():
            self._create_issuing_ca(ca)
        return ca

    def _create_issuing_ca(self, ca: IssuingCa) -> None:
        root_cert = self.ensure_root()
        root_key = serialization.load_pem_private_key((self.root_cert_path.parent / "key.pem").read_bytes(), None)
        assert isinstance(root_key, rsa.RSAPrivateKey)
        ca.directory.mkdir(parents=True, exist_ok=True)
        # The emulator's port is fixed when the CA is made: it is written into every certificate
        # (OCSP, CRL, CA issuers), so that verifiers find revocation data the standard way.
        ca.endpoint_path.write_text(json.dumps({"host": EMULATOR_HOST, "port": _free_port()}))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509_name(ca.profile.issuer))
            .issuer_name(root_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365 * 5))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(_crl_distribution(f"{ca.base_url}/crl/root.crl"), critical=False)
        )
        cert = _ca_extensions(builder, key, 0).sign(root_key, hashes.SHA256())
        _write_private(ca.directory / "key.pem", _key_pem(key))
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class IssuingCa:
    """One provider's test issuing CA, with its record of issued certificates."""

    def __init__(self, directory: Path, profile: CertificateProfile) -> None:
        self.directory = directory
        self.profile = profile

    @property
    def cert_path(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def root_path(self) -> Path:
        return self.directory.parent / "root" / "cert.pem"

    @property
    def endpoint_path(self) -> Path:
        return self.directory / "emulator.json"

    @property
    def port(self) -> int:
        return int(json.loads(self.endpoint_path.read_text())["port"])

    @property
    def base_url(self) -> str:
        """Where this provider's emulator serves OCSP, CRLs, the TSA and the signing API."""
        return f"http://{EMULATOR_HOST}:{self.port}"

    def root_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key((self.root_path.parent / "key.pem").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def root(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.root_path.read_bytes())

    def key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key((self.directory / "key.pem").read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    @contextmanager
    def _record(self) -> Iterator[dict[str, dict[str, object]]]:
        """The issued-certificate record, locked across processes while in use."""
        path = self.directory / "issued.json"
        with (self.directory / "issued.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record: dict[str, dict[str, object]] = json.loads(path.read_text()) if path.exists() else {}
            before = json.dumps(record, sort_keys=True)
            yield record
            if json.dumps(record, sort_keys=True) != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
                tmp.replace(path)

    def issue(self, csr_der: bytes, subject: Subject, key_algorithm: str, *, test_mode: bool) -> IssuedCertificate:
        if not self.profile.allows(key_algorithm, test_mode=test_mode):
            raise EnrollmentRefused(f"{self.profile.display_name} does not issue for {key_algorithm} keys")
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as exc:
            raise EnrollmentRefused(f"malformed CSR: {exc}") from exc
        try:
            if not csr.is_signature_valid:
                raise EnrollmentRefused("the CSR's signature does not verify (no proof of possession)")
        except InvalidSignature as exc:
            raise EnrollmentRefused("the CSR's signature does not verify (no proof of possession)") from exc
        public_key = csr.public_key()
        if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            raise EnrollmentRefused("only RSA and EC keys are certified")
        if not subject.common_name.strip() or not subject.uid.strip():
            raise EnrollmentRefused("the subject needs a name and an identity number")

        ca_cert, ca_key = self.certificate(), self.key()
        attrs = [NameAttribute("C", "VN")]
        if subject.locality:
            attrs.append(NameAttribute("L", subject.locality))
        if subject.organization:
            attrs.append(NameAttribute("O", subject.organization))
        attrs += [NameAttribute("CN", subject.common_name), NameAttribute("UID", self.profile.subject_uid_prefix + subject.uid)]
        now = datetime.now(UTC)
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        usage = set(self.profile.key_usage)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509_name(tuple(attrs)))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(min(now + timedelta(days=self.profile.validity_days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature="digital_signature" in usage,
                    content_commitment="non_repudiation" in usage,
                    key_encipherment="key_encipherment" in usage and isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([_EKUS[e] for e in self.profile.extended_key_usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .add_extension(_ocsp_access(self.base_url), critical=False)
            .add_extension(_crl_distribution(f"{self.base_url}/crl/ca.crl"), critical=False)
        )
        if subject.email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(subject.email)]), critical=False)
        if self.profile.policy_oids:
            builder = builder.add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in self.profile.policy_oids]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        with self._record() as record:
            record[str(serial)] = {"subject": cert.subject.rfc4514_string(), "issued_at": now.isoformat()}
        der = cert.public_bytes(serialization.Encoding.DER)
        chain = (ca_cert.public_bytes(serialization.Encoding.DER), self.root().public_bytes(serialization.Encoding.DER))
        return IssuedCertificate(der, chain, serial)

    def tsa(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """The provider's timestamping unit: an RSA-2048 key and a certificate for timeStamping only."""
        cert_path, key_path = self.directory / "tsa-cert.pem", self.directory / "tsa-key.pem"
        with (self.directory / "issued.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not cert_path.exists():
                self._create_tsa(cert_path, key_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key

    def _create_tsa(self, cert_path: Path, key_path: Path) -> None:
        ca_cert, ca_key = self.certificate(), self.key()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        name = x509_name((NameAttribute("C", "VN"), *[a for a in self.profile.issuer if a.kind == "O"],
                          NameAttribute("CN", f"{self.profile.display_name} TSA (TEST)")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(ca_cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(_ocsp_access(self.base_url), critical=False)
            .add_extension(_crl_distribution(f"{self.base_url}/crl/ca.crl"), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        path = self.directory / "issued.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record[str(serial)] = {"subject": cert.subject.rfc4514_string(), "issued_at": now.isoformat()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(path)

    def issued(self) -> dict[int, CertificateStatus]:
        """Every serial this CA issued, with its status (what OCSP and the CRL answer from)."""
        with self._record() as record:
            entries = dict(record)
        return {int(serial): _status(int(serial), entry) for serial, entry in entries.items()}

    def revoke(self, serial: int, reason: RevocationReason) -> CertificateStatus:
        with self._record() as record:
            entry = record.get(str(serial))
            if entry is None:
                raise CertificateUnknown(f"{self.profile.display_name} never issued serial {serial:x}")
            if "revoked_at" not in entry:
                entry["revoked_at"] = datetime.now(UTC).isoformat()
                entry["reason"] = reason.value
        return self.status(serial)

    def status(self, serial: int) -> CertificateStatus:
        with self._record() as record:
            entry = record.get(str(serial))
        if entry is None:
            raise CertificateUnknown(f"{self.profile.display_name} never issued serial {serial:x}")
        return _status(serial, entry)


def _status(serial: int, entry: dict[str, object]) -> CertificateStatus:
    revoked_at = entry.get("revoked_at")
    return CertificateStatus(
        serial=serial,
        revoked=revoked_at is not None,
        revoked_at=datetime.fromisoformat(str(revoked_at)) if revoked_at else None,
        reason=str(entry["reason"]) if revoked_at else None,
    )
