"""One call for one document: the document inline (multipart) and the result in the same response
(``Prefer: wait=N``) when the signer is quick; fewer round trips for the DVC portal."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.runtime import Runtime
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso_client import KysoClient
from tests.conftest import Enrolled
from tests.support import AutoApprover, bearer_http, make_device, relying_system_client


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    approver = AutoApprover([make_device(runtime, live_server, "lan")])
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-one-call")) as http:
        yield http
    approver.stop()


def test_document_inline_and_the_signed_result_in_one_response(api: httpx.Client, enrolled: Enrolled,
                                                              tmp_path: Path) -> None:
    order = tmp_path / "order.pdf"
    write_payment_order_pdf(order)
    request = {"credential_id": enrolled.rsa, "format": "pades", "documents": [
        {"title": "Giấy rút dự toán UNC-2026-000123", "field": CHIEF_ACCOUNTANT_FIELD}]}
    answer = api.post("/v1/requests/with-documents", headers={"Prefer": "wait=30"},
                      files={"document": ("order.pdf", order.read_bytes(), "application/pdf")},
                      data={"request": json.dumps(request)})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Preference-Applied"] == "wait=30"
    assert answer.json()["state"] == "signed", answer.json()
    signed = api.get(answer.json()["documents"][0].removeprefix(str(api.base_url)))
    assert signed.status_code == 200 and signed.content.startswith(b"%PDF-")


def test_prefer_wait_on_the_json_create(api: httpx.Client, enrolled: Enrolled) -> None:
    body = {"credential_id": enrolled.rsa, "hashes": [
        {"hash": base64.b64encode(hashlib.sha256(b"one call").digest()).decode(), "title": "UNC"}]}
    answer = api.post("/v1/requests", json=body, headers={"Prefer": "respond-async, wait=30"})
    assert answer.status_code == 201 and answer.json()["state"] == "signed", answer.text
    without = api.post("/v1/requests", json={**body, "hashes": [{**body["hashes"][0], "title": "UNC 2"}]})
    assert without.json()["state"] == "pending" and "Preference-Applied" not in without.headers


@pytest.mark.parametrize(("parts", "code"), [
    ({"data": {"request": "{not json"}}, "invalid_input"),
    ({"data": {}}, "invalid_input"),
    ({"data": {"request": json.dumps({"credential_id": "x", "format": "pades", "documents": [
        {"title": "a"}, {"title": "b"}]})}}, "invalid_input"),  # two documents, one part
])
def test_malformed_one_call_requests_are_refused(api: httpx.Client, parts: dict, code: str) -> None:  # type: ignore[type-arg]
    answer = api.post("/v1/requests/with-documents", files={"document": ("a.pdf", b"%PDF-1.4", "application/pdf")},
                      **parts)
    assert (answer.status_code, answer.json()["code"]) == (400, code), answer.text


def test_the_typed_client_signs_xml_in_one_call_and_validates(api: httpx.Client, live_server: str,
                                                              enrolled: Enrolled, tmp_path: Path,
                                                              emulators: object) -> None:
    from demo.documents import XML_CHIEF_ACCOUNTANT_PLACEMENT, XML_DATA_ID, payment_order_xml

    client = KysoClient(live_server, access_token=api.headers["Authorization"].removeprefix("Bearer "))
    order = tmp_path / "order.xml"
    order.write_bytes(payment_order_xml())
    body = {"credential_id": enrolled.rsa, "format": "xades", "level": "B-LT", "documents": [
        {"title": "Giấy rút dự toán UNC-2026-000123", "reference_id": XML_DATA_ID,
         "placement": XML_CHIEF_ACCOUNTANT_PLACEMENT}]}
    done = client.create_request_with_documents(body, [order], wait=30)
    assert done["state"] == "signed", done
    signed = client.download(done["documents"][0], tmp_path / "order.signed.xml")
    report = client.validate(signed)
    assert [s["indication"] for s in report["signatures"]] == ["TOTAL_PASSED"], report
