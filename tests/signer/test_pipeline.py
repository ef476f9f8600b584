"""The one document pipeline: prepare → (stored, a restart) → sign → finish, for every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.runtime import Runtime
from demo.documents import (
    CHIEF_ACCOUNTANT_FIELD,
    XML_CHIEF_ACCOUNTANT_PLACEMENT,
    XML_DATA_ID,
    payment_order_xml,
    write_payment_order_pdf,
)
from signer import InvalidDocument, ltv, pipeline, validation
from signer.keysigner import KeySigner
from tests.conftest import Enrolled
from tests.support import key_signer, openssl_cms_verify

SPECS = {
    "pades": pipeline.PadesSpec(CHIEF_ACCOUNTANT_FIELD, certify=True, reason="Duyệt chi", signer_name="Nguyễn Thị Lan"),
    "cades": pipeline.CadesSpec(),
    "cades-enveloping": pipeline.CadesSpec(enveloping=True),
    "xades": pipeline.XadesSpec(XML_DATA_ID, XML_CHIEF_ACCOUNTANT_PLACEMENT),
}


@pytest.fixture(scope="module")
def key(runtime: Runtime, enrolled: Enrolled) -> KeySigner:
    return key_signer(runtime, enrolled.rsa)


def source_for(kind: str, folder: Path) -> Path:
    if kind == "pades":
        path = folder / "order.pdf"
        write_payment_order_pdf(path)
    else:
        path = folder / "order.xml"
        path.write_bytes(payment_order_xml())
    return path


@pytest.mark.parametrize("kind", SPECS)
def test_prepare_store_restart_finish(kind: str, key: KeySigner, tmp_path: Path, trust_roots: list,  # type: ignore[type-arg]
                                      root_pem: Path) -> None:
    spec = SPECS[kind]
    source = source_for(kind, tmp_path)
    material = pipeline.SigningMaterial(key.certificate, list(key.chain), key.scheme)
    output = tmp_path / pipeline.output_name(spec, "signed")
    pending = pipeline.prepare(material, spec, source, output)
    stored = json.dumps(pending.to_dict())  # what a request keeps in its payload

    # ... a restart: nothing but the stored form and the key
    resumed = pipeline.PendingDocument.from_dict(json.loads(stored))
    assert resumed == pending and resumed.dtbs_digest == pending.dtbs_digest
    signature = key.sign(resumed.dtbs_digest, "sha256", pss=material.pss)
    assert pipeline.finish(resumed, signature, material) is ltv.Level.B_B
    assert output.is_file() and oct(output.stat().st_mode & 0o777) == "0o600"
    assert not output.with_name(output.name + ".part").exists()  # no work file left

    if kind.startswith("cades"):
        assert openssl_cms_verify(output, root_pem, None if kind.endswith("enveloping") else source).returncode == 0
    else:
        trust = validation.TrustStore(tuple(trust_roots), "test root")
        report = validation.validate_file(output, validation.ValidationOptions(trust))
        assert [s.indication.value for s in report.signatures] in (["TOTAL_PASSED"], ["INDETERMINATE"]), report
        assert all(s.sub_indication in (None, "TRY_LATER") for s in report.signatures)  # B-B: no revocation data


def test_a_pdf_finished_by_a_run_that_died_is_not_finished_twice(key: KeySigner, tmp_path: Path) -> None:
    spec = SPECS["pades"]
    material = pipeline.SigningMaterial(key.certificate, list(key.chain), key.scheme)
    output = tmp_path / "signed.pdf"
    pending = pipeline.prepare(material, spec, source_for("pades", tmp_path), output)
    signature = key.sign(pending.dtbs_digest, "sha256", pss=material.pss)
    assert pending.work_path is not None
    with pending.work_path.open("ab") as fh:  # a run that died while finishing appended some bytes
        fh.write(b"% half written")
    pipeline.finish(pending, signature, material)  # the appended bytes are cut off first
    signed = output.read_bytes()
    pipeline.finish(pending, signature, material)  # the output exists, the work file is gone: a no-op
    assert output.read_bytes() == signed


def test_what_cannot_be_prepared_leaves_nothing(key: KeySigner, tmp_path: Path) -> None:
    material = pipeline.SigningMaterial(key.certificate, list(key.chain), key.scheme)
    not_pdf = tmp_path / "order.pdf"
    not_pdf.write_bytes(b"not a PDF")
    with pytest.raises(InvalidDocument):
        pipeline.prepare(material, SPECS["pades"], not_pdf, tmp_path / "out.pdf")
    xml = tmp_path / "order.xml"
    xml.write_bytes(payment_order_xml())
    with pytest.raises(InvalidDocument) as refused:
        pipeline.prepare(material, pipeline.XadesSpec("Khong", XML_CHIEF_ACCOUNTANT_PLACEMENT), xml,
                         tmp_path / "out.xml")
    assert refused.value.code == "reference_not_found"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["order.pdf", "order.xml"]


def test_a_newer_stored_form_is_refused(key: KeySigner, tmp_path: Path) -> None:
    material = pipeline.SigningMaterial(key.certificate, list(key.chain), key.scheme)
    xml = tmp_path / "order.xml"
    xml.write_bytes(payment_order_xml())
    stored = pipeline.prepare(material, SPECS["cades"], xml, tmp_path / "out.p7s").to_dict()
    with pytest.raises(InvalidDocument):
        pipeline.PendingDocument.from_dict({**stored, "v": pipeline.VERSION + 1})
