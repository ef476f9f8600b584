"""A small PKI outside kyso, and signatures made without kyso: pyHanko alone and OpenSSL alone.

What a treasury receives from a USB token on a PC: a key that never saw kyso's HSM, a certificate
from a CA (ours, or one nobody trusts), perhaps a timestamp, perhaps revocation data.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support import require_tool

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)
    """Issuers up to the root, as a USB token's software sends them."""

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    @property
    def asn1_key(self) -> asn1_keys.PrivateKeyInfo:
        return asn1_keys.PrivateKeyInfo.load(self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, name: str) -> tuple[Path, Path, Path]:
        """(certificate, key, chain) PEM files."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, chain = directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}-chain.pem"
        cert.write_bytes(self.pem())
        key.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain) or self.pem())
        return cert, key, chain


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Công ty Chữ ký số Ngoài"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def root(common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=3650)).not_valid_after(NOW + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def issue(issuer: Issued, common_name: str, *, ca: bool = False, tsa: bool = False,
          not_before: datetime | None = None, not_after: datetime | None = None) -> Issued:
    # A TSA key is RSA: pyHanko's test timestamper signs with RSA only.
    key = rsa.generate_private_key(65537, 2048) if tsa else ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(issuer.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - timedelta(days=365))
               .not_valid_after(not_after or NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    elif tsa:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False),
                                        critical=True)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return Issued(key, cert, [issuer.cert, *issuer.chain])


def crl(issuer: Issued, revoked: dict[int, datetime] | None = None, *, this_update: datetime | None = None
        ) -> asn1_crl.CertificateList:
    """A CRL of ``issuer``: ``revoked`` maps serial numbers to their revocation time."""
    when = this_update or NOW - timedelta(minutes=5)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
               .last_update(when).next_update(when + timedelta(days=7))
               .add_extension(x509.CRLNumber(int(when.timestamp())), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                              critical=False))
    for serial, at in (revoked or {}).items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    return asn1_crl.CertificateList.load(builder.sign(issuer.key, hashes.SHA256()).public_bytes(
        serialization.Encoding.DER))


def openssl_cms_sign(content: Path, signer: Issued, out: Path, *, detached: bool = True,
                     with_chain: bool = True) -> Path:
    """A CMS signature as OpenSSL alone makes it (``-cades``: the signing-certificate-v2 attribute)."""
    cert, key, chain = signer.write(out.parent / "openssl-keys", out.stem)
    args = [require_tool("openssl"), "cms", "-sign", "-binary", "-cades", "-in", str(content), "-signer", str(cert),
            "-inkey", str(key), "-md", "sha256", "-outform", "DER", "-out", str(out)]
    if with_chain and signer.chain:
        args += ["-certfile", str(chain)]
    if not detached:
        args.append("-nodetach")
    subprocess.run(args, check=True, capture_output=True)
    return out


def pyhanko_sign_pdf(pdf_in: Path, pdf_out: Path, signer: Issued, *, field_name: str = "Signature1",
                     timestamp: tuple[Issued, datetime] | None = None, crls: list[asn1_crl.CertificateList] = (),
                     certify: bool = False, field_lock: list[str] | None = None, with_chain: bool = True) -> Path:
    """A PAdES signature made by pyHanko alone; ``crls`` go into the DSS (validation data, B-LT style)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
    from pyhanko.sign.validation.dss import DocumentSecurityStore
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    chain = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in signer.chain]
    pdf_signer = signers.SimpleSigner(signing_cert=signer.asn1, signing_key=signer.asn1_key,
                                      cert_registry=SimpleCertificateStore.from_certs(chain if with_chain else []))
    stamper = None
    if timestamp is not None:
        tsa, at = timestamp
        stamper = DummyTimeStamper(tsa_cert=tsa.asn1, tsa_key=tsa.asn1_key, fixed_dt=at,
                                   certs_to_embed=SimpleCertificateStore.from_certs(
                                       [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                                        for c in tsa.chain]))
    spec = None
    if field_lock is not None:
        spec = fields.SigFieldSpec(field_name, box=(300, 50, 500, 100), field_mdp_spec=fields.FieldMDPSpec(
            fields.FieldMDPAction.INCLUDE, fields=field_lock))
    meta = signers.PdfSignatureMetadata(field_name=field_name, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES, certify=certify,
                                        docmdp_permissions=fields.MDPPerm.FILL_FORMS)
    with pdf_in.open("rb") as inf, pdf_out.open("wb") as out:
        writer = IncrementalPdfFileWriter(inf, strict=False)
        signers.PdfSigner(meta, signer=pdf_signer, timestamper=stamper, new_field_spec=spec).sign_pdf(
            writer, output=out)
    if crls:
        with pdf_out.open("r+b") as out:
            DocumentSecurityStore.add_dss(out, sig_contents=None, certs=[signer.asn1, *chain], crls=list(crls))
    return pdf_out
