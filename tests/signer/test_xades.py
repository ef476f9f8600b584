"""XAdES enveloped in a payment order's XML: two signers, B-B to B-LT, checked by xmlsec1 and signxml."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, crl, ocsp, tsp, x509
from lxml import etree
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from signxml.exceptions import InvalidDigest, InvalidSignature
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier, XAdESVerifyResult

from broker.runtime import Runtime
from ca_adapters.emulator.server import EmulatorSet
from signer import InvalidDocument, SignerError, ltv, xades, xml_safety
from signer.keysigner import KeySigner
from tests.conftest import Enrolled, load_credential
from tests.support import key_signer, require_tool, write_pem

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
NS = {"ds": DS, "xades": XADES}
CHIEF = xades.XadesOptions("data", "/Hoso/CKy_Dvi/KeToanTruong", claimed_role="Kế toán trưởng",
                           description="Giấy rút dự toán / Ủy nhiệm chi")
HOLDER = xades.XadesOptions("data", "//ChuTaiKhoan", claimed_role="Chủ tài khoản")

ORDER = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Chứng từ điện tử gửi Kho bạc Nhà nước -->
<Hoso>
  <TTinChung><PBan>2.0.1</PBan><MaDVQHNS>1012345</MaDVQHNS></TTinChung>
  <DLieu Id="data">
    <LoaiCT>Giấy rút dự toán / Ủy nhiệm chi</LoaiCT>
    <SoCT>UNC-2026-000123</SoCT>
    <NgayCT>2026-03-15</NgayCT>
    <DonVi><Ma>U001</Ma><Ten>Trường Tiểu học Nguyễn Trãi</Ten></DonVi>
    <NguoiHuong>
      <Ten>Công ty TNHH Thiết bị Giáo dục Việt Hưng</Ten>
      <SoTK>0011004123456</SoTK>
      <NganHang>Ngân hàng TMCP Ngoại thương Việt Nam – CN Hà Nội</NganHang>
    </NguoiHuong>
    <SoTien TienTe="VND">125000000</SoTien>
    <BangChu>Một trăm hai mươi lăm triệu đồng chẵn</BangChu>
    <NoiDung>Thanh toán tiền mua sắm thiết bị dạy học &amp; bàn ghế học sinh</NoiDung>
  </DLieu>
  <CKy_Dvi>
    <KeToanTruong/>
    <ChuTaiKhoan/>
  </CKy_Dvi>
</Hoso>
""".encode()


@pytest.fixture(scope="module", params=["rsa", "rsa_pss", "ec"])
def key(request: pytest.FixtureRequest, runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, getattr(enrolled, request.param))


# -- the independent verifiers -------------------------------------------------------------------------


def signature_ids(document: bytes) -> list[str]:
    return etree.fromstring(document).xpath("//ds:Signature/@Id", namespaces=NS)


def xmlsec1_verify(document: bytes, root_pem: Path, signature_id: str,
                   tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{signature_id}.xml"
    path.write_bytes(document)
    return subprocess.run(
        [require_tool("xmlsec1"), "--verify", "--trusted-pem", str(root_pem), "--enabled-key-data", "x509",
         "--id-attr:Id", "DLieu", "--id-attr:Id", f"{DS}:Signature", "--id-attr:Id", f"{DS}:KeyInfo",
         "--id-attr:Id", f"{XADES}:SignedProperties", "--node-id", signature_id, str(path)],
        capture_output=True, text=True)


def signxml_verify(document: bytes, root_pem: Path, container: str) -> list:  # type: ignore[type-arg]
    """signxml's XAdES verifier over the signature in ``container`` (an ElementPath from the root)."""
    config = XAdESSignatureConfiguration(location=f"./{container}/")
    return XAdESVerifier().verify(document, ca_pem_file=str(root_pem), expect_config=config)


def all_verifiers_accept(document: bytes, key: KeySigner, root_pem: Path, tmp_path: Path, container: str,
                         signature_id: str) -> None:
    results = signxml_verify(document, root_pem, container)
    signed_props = next(r for r in results if isinstance(r, XAdESVerifyResult))
    cert_digest = signed_props.signed_properties.findtext(
        "xades:SigningCertificateV2/xades:Cert/xades:CertDigest/ds:DigestValue", namespaces=NS)
    assert base64.b64decode(cert_digest) == hashlib.sha256(key.certificate.dump()).digest()
    assert "Ủy nhiệm chi".encode() in results[0].signed_data  # the data reference covers the order
    if key.scheme.value != "rsa-pss":  # Debian's xmlsec1 1.2.37 knows no RSA-PSS for XML
        result = xmlsec1_verify(document, root_pem, signature_id, tmp_path)
        assert result.returncode == 0 and "SignedInfo References (ok/all): 3/3" in result.stdout + result.stderr, \
            result.stdout + result.stderr


# -- B-B ------------------------------------------------------------------------------------------------


def test_each_algorithm_is_accepted_by_xmlsec1_and_signxml(key: KeySigner, root_pem: Path, tmp_path: Path) -> None:
    signed = xades.sign(key, ORDER, CHIEF)
    [signature_id] = signature_ids(signed)
    all_verifiers_accept(signed, key, root_pem, tmp_path, "CKy_Dvi/KeToanTruong", signature_id)
    tree = etree.fromstring(signed)
    signature = tree.find(".//ds:Signature", NS)
    assert signature.getparent().tag == "KeToanTruong"
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", NS).get("Algorithm")
    assert method == {"rsa-pkcs1v15": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                      "rsa-pss": "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
                      "ecdsa": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"}[key.scheme.value]
    value = base64.b64decode(signature.findtext("ds:SignatureValue", namespaces=NS))
    assert len(value) == (64 if key.scheme.value == "ecdsa" else 256)  # ECDSA as r‖s, not DER
    props = signature.find("ds:Object/xades:QualifyingProperties/xades:SignedProperties", NS)
    reference = signature.find(f"ds:SignedInfo/ds:Reference[@URI='#{props.get('Id')}']", NS)
    assert reference.get("Type") == "http://uri.etsi.org/01903#SignedProperties"
    assert props.findtext(".//xades:ClaimedRole", namespaces=NS) == "Kế toán trưởng"
    assert props.findtext(".//xades:SigningTime", namespaces=NS).endswith("Z")
    # Nothing outside the container changed: the comment, the data, the other container.
    assert "<!-- Chứng từ điện tử gửi Kho bạc Nhà nước -->" in signed.decode()
    assert etree.tostring(tree.find("DLieu"), method="c14n") == etree.tostring(
        etree.fromstring(ORDER).find("DLieu"), method="c14n")


@pytest.fixture(scope="module", params=["ec", "rsa_pss"])
def signed_twice(request: pytest.FixtureRequest, runtime: Runtime,
                 enrolled: Enrolled) -> tuple[bytes, bytes, KeySigner, KeySigner]:
    """The chief accountant (RSA) signs, then the account holder (EC or RSA-PSS) in the other container."""
    chief, holder = key_signer(runtime, enrolled.rsa), key_signer(runtime, getattr(enrolled, request.param))
    first = xades.sign(chief, ORDER, CHIEF)
    return first, xades.sign(holder, first, HOLDER), chief, holder


def test_the_second_signature_leaves_the_first_valid(signed_twice: tuple[bytes, bytes, KeySigner, KeySigner],
                                                     root_pem: Path, tmp_path: Path) -> None:
    first, second, chief, holder = signed_twice
    chief_id, holder_id = signature_ids(second)
    assert signature_ids(first) == [chief_id]
    all_verifiers_accept(first, chief, root_pem, tmp_path, "CKy_Dvi/KeToanTruong", chief_id)
    all_verifiers_accept(second, chief, root_pem, tmp_path, "CKy_Dvi/KeToanTruong", chief_id)
    all_verifiers_accept(second, holder, root_pem, tmp_path, "CKy_Dvi/ChuTaiKhoan", holder_id)
    # The first signature's element is byte-for-byte the same inside the second document.
    def chief_c14n(doc: bytes) -> bytes:
        return etree.tostring(etree.fromstring(doc).find(".//KeToanTruong/ds:Signature", NS), method="c14n")
    assert chief_c14n(first) == chief_c14n(second)


def test_one_changed_character_fails_every_verifier(signed_twice: tuple[bytes, bytes, KeySigner, KeySigner],
                                                    root_pem: Path, tmp_path: Path) -> None:
    _, second, _, holder = signed_twice
    tampered = second.replace(b"<SoTien TienTe=\"VND\">125000000<", b"<SoTien TienTe=\"VND\">125000001<")
    assert tampered != second and len(tampered) == len(second)
    for container in ("CKy_Dvi/KeToanTruong", "CKy_Dvi/ChuTaiKhoan"):
        with pytest.raises((InvalidDigest, InvalidSignature)):
            signxml_verify(tampered, root_pem, container)
    chief_id, holder_id = signature_ids(tampered)
    for signature_id in (chief_id, holder_id) if holder.scheme.value != "rsa-pss" else (chief_id,):
        result = xmlsec1_verify(tampered, root_pem, signature_id, tmp_path)
        assert result.returncode != 0, result.stdout + result.stderr
    # A changed signed property (the claimed role) breaks the SignedProperties reference as well.
    role = second.replace("Kế toán trưởng".encode(), "Kế toán viên".encode())
    with pytest.raises((InvalidDigest, InvalidSignature)):
        signxml_verify(role, root_pem, "CKy_Dvi/KeToanTruong")


# -- the two phases ---------------------------------------------------------------------------------------


def test_prepare_shows_what_is_signed_and_finish_inserts_the_hsm_value(key: KeySigner, root_pem: Path,
                                                                       tmp_path: Path) -> None:
    prepared = xades.prepare(ORDER, key.certificate, key.chain, key.scheme, CHIEF)
    assert (prepared.reference_id, prepared.placement, prepared.signed_element) == ("data", CHIEF.placement, "DLieu")
    assert "Ủy nhiệm chi" in prepared.data_preview and "125000000" in prepared.data_preview
    assert prepared.document_digest == hashlib.sha256(ORDER).digest()
    # The digest to sign is that of the canonical SignedInfo, recomputed here from the prepared document.
    tree = etree.fromstring(prepared.document)
    signature = tree.find(".//ds:Signature", NS)
    signed_info = etree.tostring(signature.find("ds:SignedInfo", NS), method="c14n", exclusive=True)
    assert prepared.dtbs_digest == hashlib.sha256(signed_info).digest()
    data_c14n = etree.tostring(tree.find("DLieu"), method="c14n", exclusive=True)
    assert prepared.data_digest == hashlib.sha256(data_c14n).digest()
    assert not signature.findtext("ds:SignatureValue", namespaces=NS)  # nothing signed before approval
    value = key.sign(prepared.dtbs_digest, "sha256", pss=prepared.pss)
    signed = xades.finish(prepared, value, ltv.Level.B_B, None)
    all_verifiers_accept(signed, key, root_pem, tmp_path, "CKy_Dvi/KeToanTruong", prepared.signature_id)
    with pytest.raises(xades.InvalidSignatureValue) as wrong:
        xades.finish(prepared, key.sign(hashlib.sha256(b"other").digest(), "sha256", pss=prepared.pss))
    assert wrong.value.code == "invalid_signature_value"
    with pytest.raises(ltv.UnsupportedLevel):
        xades.finish(prepared, value, ltv.Level.B_LTA)


# -- B-T and B-LT: the providers' TSA, OCSP and CRLs (the emulators) -------------------------------------------


def _token(signature: etree._Element) -> cms.ContentInfo:
    text = signature.findtext(".//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp", namespaces=NS)
    return cms.ContentInfo.load(base64.b64decode(text))


@pytest.mark.parametrize("level", [ltv.Level.B_T, ltv.Level.B_LT])
def test_timestamped_and_long_term_levels(key: KeySigner, level: ltv.Level, runtime: Runtime, enrolled: Enrolled,
                                          emulators: EmulatorSet, root_pem: Path, tmp_path: Path) -> None:
    provider = load_credential(runtime, key.key_id).provider  # type: ignore[attr-defined]
    services = runtime.long_term_services(provider)
    signed = xades.sign(key, ORDER, CHIEF, level=level, services=services)
    [signature_id] = signature_ids(signed)
    all_verifiers_accept(signed, key, root_pem, tmp_path, "CKy_Dvi/KeToanTruong", signature_id)
    signature = etree.fromstring(signed).find(".//ds:Signature", NS)
    # The timestamp covers the exclusive-canonical ds:SignatureValue (EN 319 132-1, 5.3).
    value_c14n = etree.tostring(signature.find("ds:SignatureValue", NS), method="c14n", exclusive=True)
    token = _token(signature)
    info = tsp.TSTInfo.load(token["content"]["encap_content_info"]["content"].parsed.dump())
    assert info["message_imprint"]["hashed_message"].native == hashlib.sha256(value_c14n).digest()
    # OpenSSL checks the token's signature and its chain to the provider's root.
    token_path, roots = tmp_path / "ts.der", tmp_path / "tsa-roots.pem"
    token_path.write_bytes(token.dump())
    roots.write_bytes(b"".join(write_pem(tmp_path / f"r{i}.pem", r.dump()).read_bytes()
                               for i, r in enumerate(services.trust_roots)))
    result = subprocess.run([require_tool("openssl"), "ts", "-verify", "-digest",
                             hashlib.sha256(value_c14n).hexdigest(), "-in", str(token_path), "-token_in",
                             "-CAfile", str(roots)], capture_output=True, text=True)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stdout + result.stderr
    unsigned = signature.find(".//xades:UnsignedSignatureProperties", NS)
    if level is ltv.Level.B_T:
        assert [etree.QName(e).localname for e in unsigned] == ["SignatureTimeStamp"]
        return
    assert [etree.QName(e).localname for e in unsigned] == ["SignatureTimeStamp", "CertificateValues",
                                                             "RevocationValues"]
    # Offline: the signer's path validates from what the signature carries alone, no fetching.
    carried = [x509.Certificate.load(base64.b64decode(t)) for t in
               signature.xpath(".//ds:X509Certificate/text() | .//xades:EncapsulatedX509Certificate/text()",
                               namespaces=NS)]
    ocsps = [ocsp.OCSPResponse.load(base64.b64decode(t))
             for t in signature.xpath(".//xades:EncapsulatedOCSPValue/text()", namespaces=NS)]
    crls = [crl.CertificateList.load(base64.b64decode(t))
            for t in signature.xpath(".//xades:EncapsulatedCRLValue/text()", namespaces=NS)]
    assert ocsps or crls
    context = ValidationContext(trust_roots=list(services.trust_roots), other_certs=carried, ocsps=ocsps, crls=crls,
                                allow_fetching=False, revocation_mode="hard-fail")
    validator = CertificateValidator(key.certificate, validation_context=context)
    path = asyncio.run(validator.async_validate_usage({"digital_signature"}))
    assert path.leaf.dump() == key.certificate.dump()


def test_tsa_outage_fails_unless_a_lower_level_is_accepted(runtime: Runtime, enrolled: Enrolled,
                                                           emulator_reset: EmulatorSet) -> None:
    key = key_signer(runtime, enrolled.ec)
    services = runtime.long_term_services(load_credential(runtime, enrolled.ec).provider)
    emulator_reset.state("viettel").outages = {"tsa"}
    prepared = xades.prepare(ORDER, key.certificate, key.chain, key.scheme, CHIEF)
    value = key.sign(prepared.dtbs_digest, "sha256")
    with pytest.raises(ltv.TimestampUnavailable):
        xades.finish(prepared, value, ltv.Level.B_T, services)
    signed, reached = asyncio.run(xades.async_finish(prepared, value, ltv.Level.B_LT, services, accept_lower=True))
    assert reached is ltv.Level.B_B and b"SignatureTimeStamp" not in signed


# -- refused inputs, each with its stable code ------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Hoso><DLieu Id="data">&lol3;</DLieu><CKy_Dvi/></Hoso>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE Hoso [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Hoso><DLieu Id="data">&xxe;</DLieu><CKy_Dvi/></Hoso>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE Hoso SYSTEM "http://127.0.0.1:9/hoso.dtd">
<Hoso><DLieu Id="data">x</DLieu><CKy_Dvi/></Hoso>"""
WRAPPED = b"""<Hoso><DLieu Id="data">125000000</DLieu><Wrapper><DLieu Id="data">999</DLieu></Wrapper>
<CKy_Dvi/></Hoso>"""
DEEP = b"<Hoso>" + b"<a>" * 100 + b"</a>" * 100 + b"<DLieu Id='data'/><CKy_Dvi/></Hoso>"


@pytest.mark.parametrize("document, options, error, code", [
    (b"<Hoso><DLieu Id='data'>x</DLieu><CKy_Dvi></Hoso>", CHIEF, xml_safety.InvalidXml, "invalid_xml"),
    (b"", CHIEF, xml_safety.InvalidXml, "invalid_xml"),
    (XXE, CHIEF, xml_safety.XmlDtdForbidden, "xml_dtd_forbidden"),
    (BILLION_LAUGHS, CHIEF, xml_safety.XmlDtdForbidden, "xml_dtd_forbidden"),
    (EXTERNAL_DTD, CHIEF, xml_safety.XmlDtdForbidden, "xml_dtd_forbidden"),
    (b"<Hoso><DLieu Id='data'>&nbsp;</DLieu></Hoso>", CHIEF, xml_safety.XmlDtdForbidden, "xml_dtd_forbidden"),
    (ORDER, xades.XadesOptions("data", "//KeToanTruong", max_bytes=100), xml_safety.XmlTooLarge, "xml_too_large"),
    (DEEP, xades.XadesOptions("data", "/Hoso/CKy_Dvi"), xml_safety.XmlTooDeep, "xml_too_deep"),
    (WRAPPED, xades.XadesOptions("data", "/Hoso/CKy_Dvi"), xml_safety.DuplicateId, "duplicate_id"),
    (ORDER.replace(b"<SoCT>", b"<SoCT ID='data'>"), CHIEF, xml_safety.DuplicateId, "duplicate_id"),
    (ORDER, xades.XadesOptions("missing", "//KeToanTruong"), xml_safety.ReferenceNotFound, "reference_not_found"),
    (ORDER, xades.XadesOptions("x' or '1'='1", "//KeToanTruong"), xml_safety.ReferenceNotFound,
     "reference_not_found"),
    (ORDER, xades.XadesOptions("data", "/Hoso/CKy_Dvi/ThuQuy"), xml_safety.PlacementNotFound, "placement_not_found"),
    (ORDER, xades.XadesOptions("data", "/Other/CKy_Dvi"), xml_safety.PlacementNotFound, "placement_not_found"),
    (ORDER, xades.XadesOptions("data", "//DLieu/DonVi"), xml_safety.InvalidPlacement, "invalid_placement"),
    (ORDER, xades.XadesOptions("data", "//DLieu"), xml_safety.InvalidPlacement, "invalid_placement"),
    (ORDER, xades.XadesOptions("data", "//Ten"), xml_safety.InvalidPlacement, "invalid_placement"),  # 2 matches
    (ORDER, xades.XadesOptions("data", "//*[contains(., 'x')]"), xml_safety.InvalidPlacement, "invalid_placement"),
    (ORDER, xades.XadesOptions("data", "document('http://x')//a"), xml_safety.InvalidPlacement,
     "invalid_placement"),
    (ORDER, xades.XadesOptions("data", "/Hoso/" + "A" * 5000), xml_safety.InvalidPlacement, "invalid_placement"),
])
def test_bad_documents_are_refused_with_a_stable_code(document: bytes, options: xades.XadesOptions,
                                                      error: type[SignerError], code: str, key: KeySigner) -> None:
    with pytest.raises(error) as refused:
        xades.prepare(document, key.certificate, key.chain, key.scheme, options)
    assert refused.value.code == code
    assert isinstance(refused.value, InvalidDocument)
    assert len(refused.value.message) < 400  # at most ~200 characters of the input are quoted
    assert "root:" not in refused.value.message  # nothing of /etc/passwd


def test_placements_and_references_inside_an_existing_signature_are_refused(key: KeySigner) -> None:
    first = xades.sign(key, ORDER, CHIEF)
    with pytest.raises(xml_safety.InvalidPlacement) as inside:
        xades.prepare(first, key.certificate, key.chain, key.scheme,
                      xades.XadesOptions("data", "//KeToanTruong/Signature/Object"))
    assert inside.value.code == "invalid_placement"
    key_info_id = etree.fromstring(first).find(".//ds:KeyInfo", NS).get("Id")
    with pytest.raises(xml_safety.ReferenceNotFound):
        xades.prepare(first, key.certificate, key.chain, key.scheme, xades.XadesOptions(key_info_id, "//ChuTaiKhoan"))
    with pytest.raises(InvalidDocument):
        xades.prepare(ORDER, key.certificate, key.chain, key.scheme, None)


def test_a_namespaced_document_with_a_default_namespace(runtime: Runtime, enrolled: Enrolled, root_pem: Path,
                                                        tmp_path: Path) -> None:
    key = key_signer(runtime, enrolled.ec)
    order = ORDER.replace(b"<Hoso>", b'<Hoso xmlns="urn:kbnn:dvc:1.0" xmlns:x="urn:unused">')
    signed = xades.sign(key, order, CHIEF)
    [signature_id] = signature_ids(signed)
    assert XAdESVerifier().verify(signed, ca_pem_file=str(root_pem), expect_config=XAdESSignatureConfiguration(
        location="./{urn:kbnn:dvc:1.0}CKy_Dvi/{urn:kbnn:dvc:1.0}KeToanTruong/"))
    path = tmp_path / "ns.xml"
    path.write_bytes(signed)
    result = subprocess.run(
        [require_tool("xmlsec1"), "--verify", "--trusted-pem", str(root_pem), "--enabled-key-data", "x509",
         "--id-attr:Id", "urn:kbnn:dvc:1.0:DLieu", "--id-attr:Id", f"{DS}:Signature", "--id-attr:Id",
         f"{DS}:KeyInfo", "--id-attr:Id", f"{XADES}:SignedProperties", "--node-id", signature_id, str(path)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
