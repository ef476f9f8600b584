"""The CSC API over HTTP on loopback: pyHanko's CSCSigner end to end, and every bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import aiohttp
import httpx
import pytest
from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from sqlalchemy import select

from biometrics import Decision
from broker import clients
from broker.db.engine import transaction
from broker.db.models import RequestState
from broker.runtime import Runtime
from demo.documents import write_payment_order_pdf
from kyso_client import KysoClient, KysoError, csc_signer
from signer import validate
from tests.conftest import ACTOR, Enrolled
from tests.support import AutoApprover, relying_system_client


@pytest.fixture(scope="module")
def client_credentials(runtime: Runtime, enrolled: Enrolled) -> tuple[str, str]:
    return relying_system_client(runtime, "dvc")


@pytest.fixture(scope="module")
def kyso(live_server: str, client_credentials: tuple[str, str]) -> KysoClient:
    return KysoClient(live_server, client_id=client_credentials[0], client_secret=client_credentials[1])


async def _sign_pdfs(base_url: str, token: str, credential_id: str, inputs: list[Path], api_ver: str,
                     batch_size: int) -> None:
    async with aiohttp.ClientSession() as http:
        signer = await csc_signer(http, base_url, token, credential_id, api_ver=api_ver, batch_size=batch_size,
                                  description="Ủy nhiệm chi")

        async def one(path: Path) -> None:
            with path.open("rb") as fh:
                writer = IncrementalPdfFileWriter(fh)
                meta = signers.PdfSignatureMetadata(field_name="ChuTaiKhoan", subfilter=SigSeedSubFilter.PADES)
                out = await signers.PdfSigner(meta, signer=signer).async_sign_pdf(writer)
            path.with_suffix(".signed.pdf").write_bytes(out.getvalue())

        await asyncio.gather(*(one(p) for p in inputs))


@pytest.mark.parametrize(("which", "api_ver", "count"), [("rsa", "v1", 1), ("rsa_pss", "v2", 1), ("ec", "v2", 1),
                                                         ("rsa", "v2", 3)])
def test_pyhanko_csc_signer_end_to_end(which: str, api_ver: str, count: int, kyso: KysoClient, phones: AutoApprover,
                                       live_server: str, enrolled: Enrolled, tmp_path: Path,
                                       trust_roots: list[x509.Certificate]) -> None:
    credential_id = getattr(enrolled, which)
    inputs = []
    for i in range(count):
        path = tmp_path / f"order-{i}.pdf"
        write_payment_order_pdf(path)
        inputs.append(path)
    asyncio.run(_sign_pdfs(live_server, kyso.access_token, credential_id, inputs, api_ver, batch_size=count))
    for path in inputs:
        [report] = validate.validate_pdf(path.with_suffix(".signed.pdf"), trust_roots)
        assert report.ok, report


def test_info_list_and_credential_info(kyso: KysoClient, live_server: str, enrolled: Enrolled) -> None:
    for version, spec in (("v1", "1.0.4.0"), ("v2", "2.0.0.2")):
        info = httpx.post(f"{live_server}/csc/{version}/info", json={}).json()
        assert info["specs"] == spec and info["authType"] == ["oauth2client"]
    assert set(kyso.credentials()) >= {enrolled.rsa, enrolled.rsa_pss, enrolled.ec}
    lans = kyso.credentials("lan")  # other modules may add credentials for lan; hung's never show
    assert enrolled.rsa in lans and not {enrolled.rsa_pss, enrolled.ec} & set(lans)
    info = kyso.credential_info(enrolled.rsa_pss)
    assert info["key"]["algo"] == ["1.2.840.113549.1.1.10"] and info["SCAL"] == "2" and info["multisign"] == 50
    assert len(info["cert"]["certificates"]) == 3 and info["auth"] == {"mode": "implicit"}
    assert kyso.credential_info(enrolled.ec)["key"]["curve"] == "secp256r1"


def test_sad_is_bound_single_use_and_per_credential(kyso: KysoClient, phones: AutoApprover, enrolled: Enrolled) -> None:
    hashes = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    auth = kyso.authorize(enrolled.rsa, hashes)
    with pytest.raises(KysoError) as other_hashes:
        kyso.sign_hash(enrolled.rsa, auth.sad, [hashes[0], hashlib.sha256(b"c").digest()], "1.2.840.113549.1.1.11")
    assert other_hashes.value.error == "invalid_request"
    with pytest.raises(KysoError) as other_credential:
        kyso.sign_hash(enrolled.ec, auth.sad, hashes, "1.2.840.10045.4.3.2")
    assert other_credential.value.error == "invalid_request"
    signatures = kyso.sign_hash(enrolled.rsa, auth.sad, hashes, "1.2.840.113549.1.1.11")
    assert len(signatures) == 2
    with pytest.raises(KysoError) as reused:
        kyso.sign_hash(enrolled.rsa, auth.sad, hashes, "1.2.840.113549.1.1.11")
    assert reused.value.error == "invalid_request" and "already used" in reused.value.description


def test_an_expired_sad_signs_nothing(runtime: Runtime, kyso: KysoClient, phones: AutoApprover,
                                      enrolled: Enrolled) -> None:
    """A SAD lives sad_seconds from the approval: later, signHash answers expired_token and the
    hashes stay unsigned (authorised, for the recovery to expire)."""
    from sqlalchemy import update

    from broker.db.models import ItemState, RequestItem, SigningRequest
    from broker.lifecycle import signing_requests

    hashes = [hashlib.sha256(b"too late").digest()]
    auth = kyso.authorize(enrolled.rsa, hashes)
    assert auth.expires_in == runtime.settings.sad_seconds
    with transaction(runtime.sessions) as s:
        request = s.scalar(select(SigningRequest).where(SigningRequest.state == RequestState.APPROVED,
                                                        SigningRequest.credential_id == enrolled.rsa)
                           .order_by(SigningRequest.decided_at.desc()))
        s.execute(update(SigningRequest).where(SigningRequest.id == request.id)
                  .values(decided_at=signing_requests.now() - timedelta(seconds=runtime.settings.sad_seconds)))
        request_id = request.id
    with pytest.raises(KysoError) as expired:
        kyso.sign_hash(enrolled.rsa, auth.sad, hashes, "1.2.840.113549.1.1.11")
    assert expired.value.status == 400 and expired.value.error == "expired_token"
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, request_id).state is RequestState.APPROVED
        assert {i.state for i in signing_requests.get(s, request_id).items} == {ItemState.AUTHORISED}
        assert all(i.signature is None for i in s.scalars(select(RequestItem).where(RequestItem.request_id == request_id)))


def test_refusal_is_access_denied(kyso: KysoClient, phones: AutoApprover, enrolled: Enrolled) -> None:
    phones.decision = Decision.REFUSE
    try:
        with pytest.raises(KysoError) as denied:
            kyso.authorize(enrolled.ec, [hashlib.sha256(b"refuse me").digest()])
        assert denied.value.status == 403 and denied.value.error == "access_denied"
    finally:
        phones.decision = Decision.APPROVE


def _post(live_server: str, token: str | None, endpoint: str, body: object, raw: bytes | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return httpx.post(f"{live_server}/csc/v2/{endpoint}", content=raw, headers=headers)
    return httpx.post(f"{live_server}/csc/v2/{endpoint}", json=body, headers=headers)


def test_bad_input_gets_csc_errors(kyso: KysoClient, live_server: str, enrolled: Enrolled, phones: AutoApprover) -> None:
    token = kyso.access_token
    h = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    cases = [
        (None, "credentials/list", {}, 401, "invalid_token"),
        ("expired-or-made-up", "credentials/list", {}, 401, "invalid_token"),
        (token, "credentials/info", {"credentialID": "nope"}, 400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": [base64.b64encode(b"short").decode()]},
         400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": []}, 400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": ["%%%"]}, 400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": [h] * 51}, 400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": [h], "hashAlgorithmOID": "1.2.3"},
         400, "invalid_request"),
        (token, "credentials/authorize", {"credentialID": enrolled.rsa, "hashes": [h], "numSignatures": 2},
         400, "invalid_request"),
        (token, "signatures/signHash", {"credentialID": enrolled.rsa, "SAD": "made-up", "hashes": [h],
                                        "signAlgo": "1.2.840.113549.1.1.11"}, 400, "invalid_request"),
    ]
    for tok, endpoint, body, status, error in cases:
        response = _post(live_server, tok, endpoint, body)
        assert (response.status_code, response.json()["error"]) == (status, error), (endpoint, body, response.text)
    malformed = _post(live_server, token, "credentials/list", None, raw=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request"


def test_signature_algorithm_checks_before_the_hsm(kyso: KysoClient, phones: AutoApprover, enrolled: Enrolled) -> None:
    from signer import PssParams

    digest = hashlib.sha256(b"pss").digest()
    auth = kyso.authorize(enrolled.rsa_pss, [digest])
    with pytest.raises(KysoError) as no_params:
        kyso.sign_hash(enrolled.rsa_pss, auth.sad, [digest], "1.2.840.113549.1.1.10")
    assert no_params.value.error == "invalid_request"
    with pytest.raises(KysoError) as huge_salt:  # SoftHSM would fail with CKR_GENERAL_ERROR: refused as a 400
        kyso.sign_hash(enrolled.rsa_pss, auth.sad, [digest], "1.2.840.113549.1.1.10",
                       PssParams("sha256", 400).to_asn1().dump())
    assert huge_salt.value.status == 400 and "salt" in huge_salt.value.description
    with pytest.raises(KysoError) as wrong_algo:
        kyso.sign_hash(enrolled.rsa_pss, auth.sad, [digest], "1.2.840.10045.4.3.2")
    assert wrong_algo.value.error == "invalid_request"
    [signature] = kyso.sign_hash(enrolled.rsa_pss, auth.sad, [digest], "1.2.840.113549.1.1.10",
                                 PssParams("sha256", 32).to_asn1().dump())
    assert len(signature) == 256


def test_another_relying_systems_client_sees_nothing(runtime: Runtime, live_server: str, enrolled: Enrolled) -> None:
    from broker import directory
    from broker.db.models import SigningMode

    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, "OTHER1", "Another unit", SigningMode.REMOTE)
        clients.add_relying_system(s, ACTOR, "other-portal", ["OTHER1"])
        client, secret = clients.add_client(s, ACTOR, "other-portal")
    other = KysoClient(live_server, client_id=client.client_id, client_secret=secret)
    assert other.credentials() == []
    with pytest.raises(KysoError) as hidden:
        other.credential_info(enrolled.rsa)
    assert hidden.value.error == "invalid_request"
    with pytest.raises(KysoError) as bad_secret:
        KysoClient(live_server, client_id=client.client_id, client_secret="wrong")
    assert bad_secret.value.status == 401 and bad_secret.value.error == "invalid_client"


def test_signatures_timestamp_from_the_providers_tsa(kyso: KysoClient, live_server: str,
                                                     client_credentials: tuple[str, str], emulator_reset: object) -> None:
    from asn1crypto import cms, tsp

    token = kyso.access_token
    digest = hashlib.sha256(b"payment-order.xml signature value").digest()
    for version in ("v1", "v2"):
        info = httpx.post(f"{live_server}/csc/{version}/info", json={}).json()
        assert "signatures/timestamp" in info["methods"]
        answer = httpx.post(f"{live_server}/csc/{version}/signatures/timestamp", headers={
            "Authorization": f"Bearer {token}"}, json={"hash": base64.b64encode(digest).decode(),
                                                       "hashAlgo": "2.16.840.1.101.3.4.2.1", "nonce": "1f2e3d4c5b6a7980"})
        assert answer.status_code == 200, answer.text
        token_info = cms.ContentInfo.load(base64.b64decode(answer.json()["timestamp"]))
        tst = token_info["content"]["encap_content_info"]["content"].parsed
        assert isinstance(tst, tsp.TSTInfo) and tst["message_imprint"]["hashed_message"].native == digest
        assert tst["nonce"].native == 0x1f2e3d4c5b6a7980
    bad = [({"hash": base64.b64encode(digest[:20]).decode(), "hashAlgo": "2.16.840.1.101.3.4.2.1"}, 400),
           ({"hash": base64.b64encode(digest).decode(), "hashAlgo": "1.2.3"}, 400),
           ({"hash": base64.b64encode(digest).decode(), "hashAlgo": "2.16.840.1.101.3.4.2.1", "nonce": "xyz"}, 400)]
    for body, status in bad:
        answer = _post(live_server, token, "signatures/timestamp", body)
        assert (answer.status_code, answer.json()["error"]) == (status, "invalid_request"), answer.text
    emulator_reset.state("vnpt").outages = {"tsa"}  # type: ignore[attr-defined]
    down = _post(live_server, token, "signatures/timestamp",
                 {"hash": base64.b64encode(digest).decode(), "hashAlgo": "2.16.840.1.101.3.4.2.1"})
    assert (down.status_code, down.json()["error"]) == (503, "temporarily_unavailable"), down.text
    assert _post(live_server, None, "signatures/timestamp", {"hash": "", "hashAlgo": ""}).status_code == 401
