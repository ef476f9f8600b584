"""Downloading a signed document: small ones whole, large ones streamed, the same bytes and name either
way; a document removed between its look-up and its reading is gone (410), not a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api import rest
from broker.lifecycle import submissions
from broker.runtime import Runtime
from tests.conftest import Enrolled
from tests.support import AutoApprover, b64, bearer_http, relying_system_client, wait_done

CONTENT = b"<PaymentOrder><amount>125000000</amount></PaymentOrder>"


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, phones: AutoApprover) -> Iterator[httpx.Client]:
    with bearer_http(live_server, *relying_system_client(runtime, "dvc-download")) as http:
        yield http


@pytest.fixture(scope="module")
def signed(api: httpx.Client, enrolled: Enrolled) -> str:
    """The link (relative) to a signed CAdES request's document."""
    created = api.post("/v1/requests", json={"credential_id": enrolled.ec, "format": "cades",
                                             "documents": [{"content": b64(CONTENT), "title": "order.xml"}]})
    assert created.status_code == 201, created.text
    done = wait_done(api, created.json()["request_id"])
    return httpx.URL(done["documents"][0]).path


def _expected_name(link: str) -> str:
    _, _, _, request_id, _, position = link.split("/")  # /v1/requests/{id}/documents/{position}
    return f'attachment; filename="{request_id}-{position}.p7s"'


@pytest.mark.parametrize("small_limit", [rest.SMALL_DOCUMENT_BYTES, 0], ids=["whole", "streamed"])
def test_the_same_document_whole_or_streamed(api: httpx.Client, signed: str, monkeypatch: pytest.MonkeyPatch,
                                             small_limit: int) -> None:
    link = signed
    reference = api.get(link).content
    monkeypatch.setattr(rest, "SMALL_DOCUMENT_BYTES", small_limit)
    got = api.get(link)
    assert got.status_code == 200
    assert got.content == reference and len(got.content) > len(CONTENT)
    assert got.headers["content-type"] == "application/pkcs7-signature"
    assert got.headers["content-disposition"] == _expected_name(link)
    assert int(got.headers["content-length"]) == len(reference)


def test_a_document_removed_after_its_look_up_is_gone(api: httpx.Client, signed: str, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    link = signed
    found = submissions.result_file

    def removed_meanwhile(*args: object) -> tuple[Path, str]:
        _, media = found(*args)  # type: ignore[arg-type]
        return tmp_path / "removed.p7s", media  # as if housekeeping deleted it right after the check

    monkeypatch.setattr(submissions, "result_file", removed_meanwhile)
    got = api.get(link)
    assert got.status_code == 410, got.text
    assert got.json()["code"] == "document_gone"


@pytest.mark.parametrize(("tail", "status"), [
    ("/documents/99", 404), ("/documents/-1", 404), ("/documents/x", 400), ("/documents/1e400", 400),
    ("/documents/0%00", 400), ("%E2%80%AE/documents/0", 404), ("x" * 300 + "/documents/0", 404)])
def test_hostile_links_get_a_clear_client_error(api: httpx.Client, signed: str, tail: str, status: int) -> None:
    request_path = signed.rsplit("/documents/", 1)[0]
    got = api.get(request_path + tail)
    assert got.status_code == status, got.text
    assert got.json()["code"] in ("not_found", "invalid_request"), got.text
