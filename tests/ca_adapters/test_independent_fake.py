"""Each provider's client against an independent fake written from the sample bodies only.

The emulators are kyso's own code; here the other side is :mod:`tests.ca_adapters.independent_fake`,
which checks the documented request shapes, answers in the documented reply shapes and signs with
its own key. The client must fetch the certificate, start a transaction, see it PENDING once, then
get a signature that verifies over the digest with the fake's certificate (or the refusal).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ca_adapters.remote_clients import CLIENTS
from ca_adapters.remote_clients.misa import MisaClient
from ca_adapters.remote_clients.nacencomm import NacencommClient
from ca_adapters.remote_signing import DigestToSign, RemoteCredential, RemoteResult, RemoteSigningClient, RemoteStatus
from tests.ca_adapters.independent_fake import IndependentFake

PROVIDERS = ["vnpt", "viettel", "misa", "nacencomm"]


@pytest.fixture(scope="module", params=PROVIDERS)
def fake(request: pytest.FixtureRequest) -> Iterator[IndependentFake]:
    server = IndependentFake(request.param).start()
    yield server
    server.stop()


@pytest.fixture
def client(fake: IndependentFake) -> Iterator[RemoteSigningClient]:
    fake.phone = "approve"
    fake.refusals.clear()
    signing = CLIENTS[fake.provider](fake.base_url, fake.client_id, fake.client_secret, timeout=10.0)
    yield signing
    signing.close()


def _credential(fake: IndependentFake, client: RemoteSigningClient) -> RemoteCredential:
    if isinstance(client, MisaClient):
        client.login(fake.user_id, fake.password, fake.otp)
    return client.credential(fake.user_id, str(fake.idcts) if isinstance(client, NacencommClient) else "")


def _until_done(client: RemoteSigningClient, credential: RemoteCredential, transaction_id: str) -> list[RemoteResult]:
    answers = [client.poll(credential, transaction_id)]
    deadline = time.monotonic() + 10
    while answers[-1].status is RemoteStatus.PENDING:
        assert time.monotonic() < deadline, answers
        time.sleep(0.05)
        answers.append(client.poll(credential, transaction_id))
    return answers


def test_the_client_signs_end_to_end_against_the_independent_fake(fake: IndependentFake,
                                                                  client: RemoteSigningClient) -> None:
    credential = _credential(fake, client)
    certificate = x509.load_der_x509_certificate(credential.chain_der[0])
    assert certificate == fake.pki.cert  # the personal certificate, never the seal VNPT lists first
    assert x509.load_der_x509_certificate(credential.chain_der[1]) == fake.pki.ca

    digest = hashlib.sha256(b"UNC 0001 independent").digest()
    transaction_id = client.start(credential, [DigestToSign("d1", "UNC 0001", digest)], "Ký UNC 0001")
    answers = _until_done(client, credential, transaction_id)

    assert [a.status for a in answers] == [RemoteStatus.PENDING, RemoteStatus.SUCCESS], (answers, fake.refusals)
    assert not any(a.anomaly for a in answers)
    [signature] = answers[-1].signatures
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))  # raises if not
    assert not fake.refusals
    if fake.provider == "nacencomm":
        assert fake.transactions[transaction_id].acknowledged  # Capnhattrangthaihoantat_Code after the result


def test_the_signers_refusal_reaches_the_client(fake: IndependentFake, client: RemoteSigningClient) -> None:
    # VNPT's refusal is modelled (sig_rejected); Viettel 4002, MISA CANCELLED, Nacencomm -2 are integrators' code.
    fake.phone = "reject"
    credential = _credential(fake, client)
    transaction_id = client.start(credential, [DigestToSign("d1", "UNC 0002", hashlib.sha256(b"no").digest())], "Ký")
    answers = _until_done(client, credential, transaction_id)
    assert [a.status for a in answers] == [RemoteStatus.PENDING, RemoteStatus.REJECTED], (answers, fake.refusals)
    assert not answers[-1].signatures and not fake.refusals


def test_the_fake_refuses_a_request_that_drifts_from_the_samples(fake: IndependentFake) -> None:
    # The fake is not vacuous: a digest in the wrong encoding, or a missing documented field, is refused.
    digest = hashlib.sha256(b"drift").digest()
    with httpx.Client(base_url=fake.base_url, timeout=10.0) as http:
        if fake.provider == "vnpt":  # hex documented, base64 sent
            body = http.post("/v1/signatures/sign", json={
                "sp_id": fake.client_id, "sp_password": fake.client_secret, "user_id": fake.user_id,
                "transaction_id": "t", "transaction_desc": "d", "serial_number": f"{fake.pki.cert.serial_number:x}",
                "sign_files": [{"data_to_be_signed": base64.b64encode(digest).decode(), "doc_id": "d1",
                                "file_type": "pdf", "sign_type": "hash"}]}).json()
            assert body["status_code"] == 400
        elif fake.provider == "viettel":  # async a string, not the documented number
            token = http.post("/vtss/service/ras/v1/login", json={
                "client_id": fake.client_id, "client_secret": fake.client_secret,
                "profile_id": "adss:ras:profile:001", "user_id": fake.user_id}).json()["access_token"]
            response = http.post("/vtss/service/signHash", headers={"Authorization": f"Bearer {token}"}, json={
                "client_id": fake.client_id, "client_secret": fake.client_secret,
                "credentialID": fake.viettel_credential, "numSignatures": 1, "description": "eA==",
                "documents": [{"document_id": "d1", "document_name": "eA=="}],
                "hash": [base64.b64encode(digest).decode()], "hashAlgo": "2.16.840.1.101.3.4.2.1",
                "signAlgo": "1.2.840.113549.1.1.1", "async": "1"})
            assert response.status_code == 400
        elif fake.provider == "misa":  # the two-factor call with the "x-" headers the page does not show
            response = http.post("/api/auth/api/v1/auth/two-factor-auth",
                                 headers={"x-clientId": fake.client_id, "x-clientKey": fake.client_secret},
                                 json={"userName": fake.user_id, "code": fake.otp, "otpType": 0, "remember": False})
            assert response.json()["status"]["errorCode"] != 0
        else:  # no Type
            text = http.post("/api/APISigncore/Guiyeucauky_Mobilesign", json={
                "Serial": f"{fake.pki.cert.serial_number:x}", "Masothue": fake.user_id,
                "Cleartext": base64.b64encode(digest).decode(), "Mahethong": fake.client_id,
                "Keyhethong": "1|r||t", "Linkfile_goc": "", "Email": ""}).json()
            assert text.startswith("ERR")
    assert fake.refusals
    fake.refusals.clear()
