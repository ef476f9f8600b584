"""XAdES B-B of a payment order in process: kyso's ``signer.xades`` against signxml's own signing.

signxml: ``XAdESSigner`` (exclusive canonicalisation, RSA-SHA256) with a software RSA-2048 key, the
same document parsed, the signature placed in the same container and the result serialised.
kyso: ``xades.sign`` (safe parse and checks, prepare, sign, finish) with the HSM's RSA-2048 key, and
with a software key of the same size to show the format's own cost apart from the HSM's.
Usage: ``python -m bench.xades [--seconds N]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import CanonicalizationMethod, SignatureMethod
from signxml.xades import XAdESSigner

from bench.scratch import scratch_credential
from bench.signing import rate
from broker import credentials
from signer import xades
from signer.algorithms import PssParams, SignatureScheme
from signer.keysigner import KeySigner

ORDER = """<?xml version="1.0" encoding="UTF-8"?>
<Hoso>
  <DLieu Id="data">
    <LoaiCT>Giấy rút dự toán / Ủy nhiệm chi</LoaiCT><SoCT>UNC-2026-000123</SoCT><NgayCT>2026-03-15</NgayCT>
    <DonVi><Ma>U001</Ma><Ten>Trường Tiểu học Nguyễn Trãi</Ten></DonVi>
    <NguoiHuong><Ten>Công ty TNHH Thiết bị Giáo dục Việt Hưng</Ten><SoTK>0011004123456</SoTK></NguoiHuong>
    <SoTien TienTe="VND">125000000</SoTien><BangChu>Một trăm hai mươi lăm triệu đồng chẵn</BangChu>
  </DLieu>
  <CKy_Dvi><KeToanTruong/><ChuTaiKhoan/></CKy_Dvi>
</Hoso>
""".encode()
OPTIONS = xades.XadesOptions("data", "/Hoso/CKy_Dvi/KeToanTruong", claimed_role="Kế toán trưởng")
DS = "http://www.w3.org/2000/09/xmldsig#"


class _SoftwareKeySigner(KeySigner):
    """An RSA key in memory, for measuring the format without the HSM."""

    def __init__(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate]) -> None:
        super().__init__(certificate, chain, SignatureScheme.RSA_PKCS1_V15)
        self._key = key

    def _sign_digest(self, digest: bytes, hash_name: str, scheme: SignatureScheme, pss: PssParams | None) -> bytes:
        return self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def _software_key(size: int) -> tuple[rsa.RSAPrivateKey, cx509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=size)
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Thị Kế Toán")])
    now = datetime.now(timezone.utc)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(cx509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert


def signxml_once(key: rsa.RSAPrivateKey, cert: cx509.Certificate) -> bytes:
    root = etree.fromstring(ORDER)
    etree.SubElement(root.find("CKy_Dvi/KeToanTruong"), f"{{{DS}}}Signature", Id="placeholder")
    signer = XAdESSigner(signature_algorithm=SignatureMethod.RSA_SHA256,
                         c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(root, key=key, cert=[cert], reference_uri="#data", always_add_key_value=False)
    return etree.tostring(signed.getroottree(), xml_declaration=True, encoding="UTF-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        runtime, credential = scratch_credential(Path(name))
        try:
            hsm_key = credentials.key_signer(runtime.hsm, credential)
            soft_key, soft_cert = _software_key(hsm_key.key_bits)
            soft_signer = _SoftwareKeySigner(soft_key, x509.Certificate.load(soft_cert.public_bytes(
                serialization.Encoding.DER)), ())
            for warm in range(3):
                signxml_once(soft_key, soft_cert)
                xades.sign(hsm_key, ORDER, OPTIONS)
                xades.sign(soft_signer, ORDER, OPTIONS)
            plain = rate(lambda _: signxml_once(soft_key, soft_cert), args.seconds)
            ours_soft = rate(lambda _: xades.sign(soft_signer, ORDER, OPTIONS), args.seconds)
            ours_hsm = rate(lambda _: xades.sign(hsm_key, ORDER, OPTIONS), args.seconds)
        finally:
            runtime.close()
    print(f"XAdES B-B, {len(ORDER)}-byte payment order, RSA-{hsm_key.key_bits}, one thread")
    print(f"  signxml, software key:     {plain:7.1f}/s")
    print(f"  kyso,    software key:     {ours_soft:7.1f}/s = {ours_soft / plain:.3f} × signxml")
    print(f"  kyso,    HSM key (SoftHSM): {ours_hsm:6.1f}/s = {ours_hsm / plain:.3f} × signxml")


if __name__ == "__main__":
    main()
