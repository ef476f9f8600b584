"""XML signatures in the one validation core: kyso's XAdES at B-B, B-T and B-LT, two signers, the
tampering that must fail, hostile documents; cross-checked with xmlsec1 where it applies."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from lxml import etree

from broker.runtime import Runtime
from ca_adapters.emulator.server import EmulatorSet
from kyso.cli import run
from signer import ltv, reports, validation, xades, xml_safety
from signer.algorithms import SignatureScheme
from signer.keysigner import KeySigner
from signer.validation_report import Indication
from tests.conftest import Enrolled, load_credential
from tests.signer import validation_pki as pki
from tests.signer.test_validation_reports import World, world  # noqa: F401 - the session's outside PKI
from tests.signer.test_xades import BILLION_LAUGHS, CHIEF, HOLDER, NS, ORDER, XXE, signature_ids, xmlsec1_verify
from tests.support import key_signer, write_pem

PASSED, FAILED, INDETERMINATE = Indication.TOTAL_PASSED, Indication.TOTAL_FAILED, Indication.INDETERMINATE


@pytest.fixture(scope="module")
def store(trust_roots: list[x509.Certificate]) -> validation.TrustStore:
    return validation.trust_store_of(trust_roots, "the test providers' root")


def _options(store: validation.TrustStore, **kw: object) -> validation.ValidationOptions:
    return validation.ValidationOptions(store, **kw)  # type: ignore[arg-type]


def _validate(document: bytes, options: validation.ValidationOptions, tmp_path: Path,
              name: str = "order.xml") -> validation.ValidationReport:
    path = tmp_path / name
    path.write_bytes(document)
    return validation.validate_file(path, options)


def _verdicts(report: validation.ValidationReport) -> list[tuple[Indication, str | None]]:
    return [(s.indication, s.sub_indication) for s in report.signatures]


def _services(runtime: Runtime, key: KeySigner) -> ltv.LongTermServices:
    return runtime.long_term_services(load_credential(runtime, key.key_id).provider)  # type: ignore[attr-defined]


def xmlsec1_ok(document: bytes, root_pem: Path, tmp_path: Path, key: KeySigner | None = None) -> bool | None:
    """xmlsec1's answer for every signature; None where it cannot tell (Debian's 1.2 has no RSA-PSS for XML)."""
    if key is not None and key.scheme is SignatureScheme.RSA_PSS:
        return None
    results = [xmlsec1_verify(document, root_pem, sid, tmp_path) for sid in signature_ids(document)]
    return all(r.returncode == 0 for r in results)


@pytest.fixture(scope="module")
def rsa(runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, enrolled.rsa)


@pytest.fixture(scope="module")
def ec_key(runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, enrolled.ec)


@pytest.fixture(scope="module")
def b_lt(runtime: Runtime, rsa: KeySigner, emulators: EmulatorSet) -> bytes:
    return xades.sign(rsa, ORDER, CHIEF, level=ltv.Level.B_LT, services=_services(runtime, rsa))


# -- kyso's signatures at each level --------------------------------------------------------------------------


@pytest.mark.parametrize("credential", ["rsa", "rsa_pss", "ec"])
def test_b_b_is_try_later_offline_and_passes_with_fetching(credential: str, runtime: Runtime, enrolled: Enrolled,
                                                           emulator_reset: EmulatorSet, store: validation.TrustStore,
                                                           root_pem: Path, tmp_path: Path) -> None:
    key = key_signer(runtime, getattr(enrolled, credential))
    signed = xades.sign(key, ORDER, CHIEF)
    offline = _validate(signed, _options(store), tmp_path)
    assert report_format(offline) == "XML" and _verdicts(offline) == [(INDETERMINATE, "TRY_LATER")]
    assert any("revocation" in r for r in offline.signatures[0].reasons)
    online = _validate(signed, _options(store, fetch_revocation=True), tmp_path)
    [sig] = online.signatures
    assert (sig.indication, sig.sub_indication, sig.level, sig.kind) == (PASSED, None, "B-B", "XAdES"), sig
    assert sig.signer == key.certificate.subject.human_friendly and sig.claimed_signing_time is not None
    assert sig.proven_signing_time is None and sig.timestamps == []
    assert {r.source for r in sig.revocation} == {"fetched"}
    assert sig.chain[0].trust_anchor and sig.chain[-1].sha256 == key.certificate.sha256.hex()
    assert sig.signature_algorithm.endswith({"rsa": "rsa-sha256", "rsa_pss": "sha256-rsa-MGF1",
                                             "ec": "ecdsa-sha256"}[credential])
    assert xmlsec1_ok(signed, root_pem, tmp_path, key) in (True, None)


def test_b_t_passes_with_fetching_and_b_lt_offline(runtime: Runtime, rsa: KeySigner, b_lt: bytes,
                                                   emulator_reset: EmulatorSet, store: validation.TrustStore,
                                                   root_pem: Path, tmp_path: Path) -> None:
    b_t = xades.sign(rsa, ORDER, CHIEF, level=ltv.Level.B_T, services=_services(runtime, rsa))
    # B-T carries no revocation data: offline the chain's status is unknown, as for PDF and CMS.
    assert _verdicts(_validate(b_t, _options(store), tmp_path)) == [(INDETERMINATE, "TRY_LATER")]
    [sig] = _validate(b_t, _options(store, fetch_revocation=True), tmp_path).signatures
    assert (sig.indication, sig.level) == (PASSED, "B-T"), sig
    assert sig.proven_signing_time is not None and sig.timestamps[0].indication is PASSED
    [sig] = _validate(b_lt, _options(store), tmp_path).signatures
    assert (sig.indication, sig.sub_indication, sig.level) == (PASSED, None, "B-LT"), sig
    assert sig.revocation and {r.source for r in sig.revocation} == {"embedded"}
    [stamp] = sig.timestamps
    assert (stamp.kind, stamp.indication) == ("signature", PASSED) and stamp.time == sig.proven_signing_time
    assert sig.claimed_signing_time is not None and abs(stamp.time - sig.claimed_signing_time) < timedelta(minutes=5)
    assert xmlsec1_ok(b_lt, root_pem, tmp_path) is True


def test_two_signers_both_pass(runtime: Runtime, rsa: KeySigner, ec_key: KeySigner, b_lt: bytes,
                               emulator_reset: EmulatorSet, store: validation.TrustStore, root_pem: Path,
                               tmp_path: Path) -> None:
    both = xades.sign(ec_key, b_lt, HOLDER, level=ltv.Level.B_LT, services=_services(runtime, ec_key))
    report = _validate(both, _options(store), tmp_path)
    assert _verdicts(report) == [(PASSED, None), (PASSED, None)], report.signatures
    assert [s.id for s in report.signatures] == signature_ids(both)
    assert [s.signer for s in report.signatures] == [rsa.certificate.subject.human_friendly,
                                                     ec_key.certificate.subject.human_friendly]
    assert report.passed and json.loads(json.dumps(report.as_dict()))["format"] == "XML"
    assert xmlsec1_ok(both, root_pem, tmp_path) is True
    # Through the module's own entry point, too.
    assert [v.indication for v in xades.verify(both, _options(store))] == [PASSED, PASSED]


def report_format(report: validation.ValidationReport) -> str:
    return report.format


# -- tampering -------------------------------------------------------------------------------------------------


def _signature_value(document: bytes) -> str:
    return etree.fromstring(document).findtext(".//ds:SignatureValue", namespaces=NS)


def test_tampering_is_found(b_lt: bytes, store: validation.TrustStore, root_pem: Path, tmp_path: Path) -> None:
    data = b_lt.replace(b"<SoTien TienTe=\"VND\">125000000<", b"<SoTien TienTe=\"VND\">125000001<")
    assert data != b_lt
    report = _validate(data, _options(store), tmp_path)
    assert _verdicts(report) == [(FAILED, "HASH_FAILURE")]
    assert report.signatures[0].level is None and "#data" in " ".join(report.signatures[0].reasons)
    assert xmlsec1_ok(data, root_pem, tmp_path) is False

    value = _signature_value(b_lt)
    raw = bytearray(base64.b64decode(value))
    raw[10] ^= 0x01
    changed_value = b_lt.replace(value.encode(), base64.b64encode(bytes(raw)))
    assert _verdicts(_validate(changed_value, _options(store), tmp_path)) == [(FAILED, "SIG_CRYPTO_FAILURE")]
    assert xmlsec1_ok(changed_value, root_pem, tmp_path) is False

    when = etree.fromstring(b_lt).findtext(".//xades:SigningTime", namespaces=NS)
    earlier = when.replace(when[:4], str(int(when[:4]) - 1))
    changed_time = b_lt.replace(f"<xades:SigningTime>{when}<".encode(), f"<xades:SigningTime>{earlier}<".encode())
    assert changed_time != b_lt
    report = _validate(changed_time, _options(store), tmp_path)
    assert _verdicts(report) == [(FAILED, "HASH_FAILURE")]
    assert any("SignedProperties" in r for r in report.signatures[0].reasons), report.signatures[0].reasons
    assert xmlsec1_ok(changed_time, root_pem, tmp_path) is False


def test_signature_wrapping_is_a_format_failure(b_lt: bytes, store: validation.TrustStore, root_pem: Path,
                                                tmp_path: Path) -> None:
    # The signed element moved aside, a forged one with the same Id where a reader looks first.
    wrapped = b_lt.replace(b"<TTinChung>", b'<DLieu Id="data"><SoTien TienTe="VND">999000000</SoTien></DLieu>'
                                           b"<TTinChung>")
    assert _verdicts(_validate(wrapped, _options(store), tmp_path)) == [(FAILED, "FORMAT_FAILURE")]
    # An Id under another attribute name is the same trap (resolvers look them up one name at a time).
    other_name = b_lt.replace(b"<SoCT>", b'<SoCT ID="data">')
    report = _validate(other_name, _options(store), tmp_path)
    assert _verdicts(report) == [(FAILED, "FORMAT_FAILURE")] and "wrapping" in " ".join(report.signatures[0].reasons)
    assert xmlsec1_ok(wrapped, root_pem, tmp_path) is False


def _asn1(cert: cx509.Certificate) -> x509.Certificate:
    return x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def test_untrusted_root(b_lt: bytes, tmp_path: Path) -> None:
    rogue = pki.root("Rogue Root CA")
    report = _validate(b_lt, _options(validation.trust_store_of([rogue.asn1], "a rogue root")), tmp_path)
    assert _verdicts(report) == [(INDETERMINATE, "NO_CERTIFICATE_CHAIN_FOUND")]
    assert any("not in the trust store" in r for r in report.signatures[0].reasons), report.signatures[0].reasons
    rogue_pem = write_pem(tmp_path / "rogue.pem", rogue.asn1.dump())
    assert xmlsec1_ok(b_lt, rogue_pem, tmp_path) is False


# -- certificates outside kyso: revoked and expired, with the CRLs embedded --------------------------------------------


def _foreign_xades(issued: pki.Issued, crls: list) -> bytes:  # type: ignore[type-arg]
    """A XAdES made with a key outside the HSM, its chain and CRLs added as B-LT's values (no timestamp)."""
    cert = issued.asn1
    chain = [_asn1(c) for c in issued.chain]
    prepared = xades.prepare(ORDER, cert, chain, SignatureScheme.ECDSA, CHIEF)
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    value = issued.key.sign(prepared.dtbs_digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    tree = etree.fromstring(xades.finish(prepared, value))
    qualifying = tree.find(".//xades:QualifyingProperties", NS)
    unsigned = etree.SubElement(etree.SubElement(qualifying, f"{{{NS['xades']}}}UnsignedProperties"),
                                f"{{{NS['xades']}}}UnsignedSignatureProperties")
    xades._add_validation_data(unsigned, ltv.ValidationData(chain, crls, []), {cert.sha256})
    return etree.tostring(tree.getroottree(), xml_declaration=True, encoding="UTF-8")


def test_revoked_and_expired_certificates(world: World, tmp_path: Path) -> None:  # noqa: F811
    revoked = _foreign_xades(world.revoked, world.crls)
    report = _validate(revoked, world.options(), tmp_path)
    assert _verdicts(report) == [(INDETERMINATE, "REVOKED_NO_POE")]
    assert any("revoked on" in r for r in report.signatures[0].reasons)
    expired = _foreign_xades(world.expired, world.crls)
    assert _verdicts(_validate(expired, world.options(), tmp_path)) == [(INDETERMINATE, "OUT_OF_BOUNDS_NO_POE")]
    good = _foreign_xades(world.token, world.crls)
    [sig] = _validate(good, world.options(), tmp_path).signatures
    assert (sig.indication, sig.level) == (PASSED, "B-B") and {r.source for r in sig.revocation} == {"embedded"}


# -- documents that are not signed XML ------------------------------------------------------------------------------


def test_hostile_and_unsigned_documents(b_lt: bytes, store: validation.TrustStore, tmp_path: Path) -> None:
    for document in (XXE, BILLION_LAUGHS, b_lt.replace(b"<Hoso>", b"<!DOCTYPE Hoso>\n<Hoso>")):
        with pytest.raises(xml_safety.XmlDtdForbidden) as refused:
            _validate(document, _options(store), tmp_path)
        assert refused.value.code == "xml_dtd_forbidden" and "root:" not in refused.value.message
    with pytest.raises(validation.NotSigned) as unsigned:
        _validate(ORDER, _options(store), tmp_path)
    assert unsigned.value.code == "not_signed"
    with pytest.raises(xml_safety.InvalidXml):
        _validate(b"<Hoso><unclosed></Hoso>", _options(store), tmp_path)
    # A byte order mark before the declaration is still XML.
    report = _validate(b"\xef\xbb\xbf" + b_lt, _options(store), tmp_path)
    assert report.format == "XML" and _verdicts(report) == [(PASSED, None)]


# -- the human report and the CLI --------------------------------------------------------------------------------------


def test_report_and_cli(b_lt: bytes, store: validation.TrustStore, root_pem: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    report = _validate(b_lt, _options(store), tmp_path)
    page = reports.render_html(report, "en")
    assert "XML" in page and "XAdES" in page and "B-LT" in page and "PASSED" in page
    assert reports.render_pdf(report, "vi").startswith(b"%PDF-")
    signed = tmp_path / "signed.xml"
    signed.write_bytes(b_lt)
    code = run(["--data-dir", str(tmp_path / "no-data-dir"), "verify", str(signed), "--trust", str(root_pem),
                "--json", "--report", str(tmp_path / "r.html")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    answer = json.loads(out)
    assert answer["format"] == "XML" and answer["signatures"][0]["level"] == "B-LT"
    assert "HỢP LỆ" in (tmp_path / "r.html").read_text()
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(b_lt.replace(b"125000000", b"925000000"))
    code = run(["--data-dir", str(tmp_path / "no-data-dir"), "verify", str(tampered), "--trust", str(root_pem)])
    out, err = capsys.readouterr()
    assert code == 1 and "HASH_FAILURE" in out and "Traceback" not in out + err
    dtd = tmp_path / "dtd.xml"
    dtd.write_bytes(XXE)
    code = run(["--data-dir", str(tmp_path / "no-data-dir"), "verify", str(dtd), "--trust", str(root_pem)])
    out, err = capsys.readouterr()
    assert code == 2 and err.strip().startswith("error [xml_dtd_forbidden]"), err
