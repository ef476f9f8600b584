"""XML documents signed inside themselves (XAdES) through the REST API: both roles, levels, bad input."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from broker.db.engine import transaction
from broker.runtime import Runtime
from demo.documents import (
    XML_ACCOUNT_HOLDER_PLACEMENT,
    XML_CHIEF_ACCOUNTANT_PLACEMENT,
    XML_DATA_ID,
    payment_order_xml,
)
from signer import validation
from tests.conftest import Enrolled
from tests.support import AutoApprover, b64, bearer_http, relying_system_client, require_tool, wait_done

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, phones: AutoApprover) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-xml")) as http:
        yield http


def xml_body(credential_id: str, placement: str, **document: object) -> dict:  # type: ignore[type-arg]
    return {"credential_id": credential_id, "format": "xades", "documents": [
        {"title": "Giấy rút dự toán UNC-2026-000123", "reference_id": XML_DATA_ID, "placement": placement,
         **document}]}


def xmlsec1(path: Path, root_pem: Path, signature_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("xmlsec1"), "--verify", "--trusted-pem", str(root_pem), "--enabled-key-data", "x509",
         "--id-attr:Id", XML_DATA_ID, "--id-attr:Id", f"{DS}:Signature", "--id-attr:Id", f"{DS}:KeyInfo",
         "--id-attr:Id", f"{XADES}:SignedProperties", "--node-id", signature_id, str(path)],
        capture_output=True, text=True)


def test_both_roles_sign_the_payment_orders_xml(api: httpx.Client, enrolled: Enrolled, root_pem: Path,
                                                trust_roots: list, emulators: object, tmp_path: Path) -> None:  # type: ignore[type-arg]
    first = api.post("/v1/requests", json=xml_body(enrolled.rsa, XML_CHIEF_ACCOUNTANT_PLACEMENT,
                                                   content=b64(payment_order_xml())) | {"level": "B-LT"})
    assert first.status_code == 201, first.text
    chief = wait_done(api, first.json()["request_id"])
    assert (chief["state"], chief["level"]) == ("signed", "B-LT"), chief
    second = api.post("/v1/requests", json=xml_body(enrolled.ec, XML_ACCOUNT_HOLDER_PLACEMENT)
                      | {"after_request_id": first.json()["request_id"], "level": "B-T"})
    assert second.status_code == 201, second.text
    holder = wait_done(api, second.json()["request_id"])
    assert holder["state"] == "signed", holder
    signed = tmp_path / "payment-order.signed.xml"
    download = api.get(holder["documents"][0].removeprefix(str(api.base_url)))
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/xml")
    signed.write_bytes(download.content)

    root = etree.fromstring(signed.read_bytes())
    signatures = root.findall(f".//{{{DS}}}Signature")
    assert [s.getparent().tag for s in signatures] == ["KeToanTruong", "ChuTaiKhoan"]
    for signature in signatures:  # both valid for an independent verifier, the first after the second
        result = xmlsec1(signed, root_pem, signature.get("Id"))
        assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stderr
    trust = validation.TrustStore(tuple(trust_roots), "test root")
    offline = validation.validate_file(signed, validation.ValidationOptions(trust)).signatures
    assert [(s.indication.value, s.level) for s in offline][0] == ("TOTAL_PASSED", "B-LT"), offline
    assert offline[1].sub_indication == "TRY_LATER"  # B-T carries no revocation data: fetched below
    fetched = validation.validate_file(signed, validation.ValidationOptions(trust, fetch_revocation=True)).signatures
    assert [s.indication.value for s in fetched] == ["TOTAL_PASSED", "TOTAL_PASSED"], fetched

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(signed.read_bytes().replace(b"125.000.000", b"125.000.001"))
    assert all(xmlsec1(tampered, root_pem, s.get("Id")).returncode != 0 for s in signatures)


def test_the_signer_approves_where_the_signature_goes(api: httpx.Client, runtime: Runtime, enrolled: Enrolled) -> None:
    """The reference and the placement change what a signature means: kept to be shown, and bound."""
    from biometrics import BindingInput, BoundDocument, compute_binding
    from broker.lifecycle import signing_requests
    from broker.lifecycle.payload import shown_options

    created = api.post("/v1/requests", json=xml_body(enrolled.rsa, XML_CHIEF_ACCOUNTANT_PLACEMENT,
                                                     content=b64(payment_order_xml())))
    assert created.status_code == 201, created.text
    with transaction(runtime.sessions) as s:
        request = signing_requests.get(s, created.json()["request_id"])
        options = {"reference_id": XML_DATA_ID, "placement": XML_CHIEF_ACCOUNTANT_PLACEMENT}
        assert shown_options(request.payload, len(request.items)) == [options]
        item = request.items[0]

        def binding(bound: dict) -> bytes:  # type: ignore[type-arg]
            return compute_binding(BindingInput(
                request_id=request.id, credential_id=request.credential_id, relying_system=request.relying_system,
                hash_algorithm=request.hash_algorithm,
                documents=[BoundDocument(item.digest, item.title, item.summary, bound)],
                expires_at=signing_requests.aware(request.expires_at), nonce=request.nonce))

        assert binding(options) == request.binding != binding({})


@pytest.mark.parametrize(("document", "status", "code"), [
    ({"content": b64(b"<Hoso><DLieu Id='DLieu'>x</DLieu>")}, 422, "invalid_xml"),
    ({"content": b64(b'<?xml version="1.0"?><!DOCTYPE Hoso [<!ENTITY x "y">]><Hoso><DLieu Id="DLieu">&x;</DLieu>'
                     b'<CKy_Dvi><KeToanTruong/></CKy_Dvi></Hoso>')}, 422, "xml_dtd_forbidden"),
    ({"content": b64(payment_order_xml().replace(b"<TTinChung>", b'<TTinChung Id="DLieu">'))}, 422, "duplicate_id"),
    ({"content": b64(payment_order_xml()), "reference_id": "Khac"}, 422, "reference_not_found"),
    ({"content": b64(payment_order_xml()), "placement": "/Hoso/Khong"}, 422, "placement_not_found"),
    ({"content": b64(payment_order_xml()), "placement": "/Hoso/DLieu/SoTien"}, 422, "invalid_placement"),
    ({"content": b64(payment_order_xml()), "placement": None}, 400, "invalid_input"),
    ({"content": b64(payment_order_xml()), "title": "UNC\u202e1"}, 400, "invalid_text"),
])
def test_bad_xml_is_refused_and_nothing_is_created(api: httpx.Client, runtime: Runtime, enrolled: Enrolled,
                                                   document: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    from sqlalchemy import func, select

    from broker.db.models import SigningRequest

    with transaction(runtime.sessions) as s:
        before = s.scalar(select(func.count()).select_from(SigningRequest))
    body = xml_body(enrolled.rsa, XML_CHIEF_ACCOUNTANT_PLACEMENT)
    body["documents"][0].update(document)
    answer = api.post("/v1/requests", json=body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    with transaction(runtime.sessions) as s:
        assert s.scalar(select(func.count()).select_from(SigningRequest)) == before
