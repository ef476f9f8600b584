"""The providers' emulators: OCSP, CRL and TSA answers, and each remote-signing API's shape and quirks
asserted through its adapter's client, down to a CAdES signature built around the provider's raw one."""

from __future__ import annotations

import base64
import hashlib
import inspect
import time
import uuid
from pathlib import Path

import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509 import ocsp

from broker.runtime import Runtime
from ca_adapters import Subject
from ca_adapters.emulator.provider_apis.misa import misa_otp
from ca_adapters.emulator.server import EmulatorSet
from ca_adapters.remote_clients import viettel as viettel_client
from ca_adapters.remote_clients.misa import MisaClient
from ca_adapters.remote_clients.nacencomm import NacencommClient
from ca_adapters.remote_clients.viettel import ViettelClient
from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderApiError,
    ProviderSessionRevoked,
    RemoteCredential,
    RemoteSigningClient,
    RemoteStatus,
    SoleControlRefused,
)
from signer import SignatureScheme, cades, ltv, validate
from tests.support import openssl_cms_verify, write_pem

PROVIDERS = ["viettel", "vnpt", "misa", "nacencomm"]


def _ocsp(url: str, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return ocsp.load_der_ocsp_response(httpx.post(url, content=request.public_bytes(serialization.Encoding.DER),
                                                  headers={"Content-Type": "application/ocsp-request"}).content)


def test_ocsp_and_crl_follow_revocation(runtime: Runtime, emulators: EmulatorSet) -> None:
    adapter = runtime.ca("misa")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    issued = adapter.enroll(csr.public_bytes(serialization.Encoding.DER), Subject("Lê Thị Mai", "0101234567"), "ec-p256")
    cert, issuer = (x509.load_der_x509_certificate(d) for d in (issued.certificate_der, issued.chain_der[0]))
    [ocsp_url] = [d.access_location.value for d in cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
                  if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP]
    assert ocsp_url == adapter.endpoints().ocsp_url
    good = _ocsp(ocsp_url, cert, issuer)
    assert good.certificate_status is ocsp.OCSPCertStatus.GOOD
    issuer.public_key().verify(good.signature, good.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg, arg-type]
    adapter.revoke(issued.serial)
    assert _ocsp(ocsp_url, cert, issuer).certificate_status is ocsp.OCSPCertStatus.REVOKED
    crl = x509.load_der_x509_crl(httpx.get(adapter.endpoints().crl_url or "").content)
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None

    # A certificate of another CA: the responder is not authorised for it.
    other = runtime.ca("vnpt")
    other_issued = other.enroll(csr.public_bytes(serialization.Encoding.DER), Subject("X", "1"), "ec-p256")
    foreign = x509.load_der_x509_certificate(other_issued.certificate_der)
    assert _ocsp(ocsp_url, foreign, x509.load_der_x509_certificate(other_issued.chain_der[0])).response_status \
        is ocsp.OCSPResponseStatus.UNAUTHORIZED
    malformed = ocsp.load_der_ocsp_response(httpx.post(ocsp_url, content=b"not ocsp").content)
    assert malformed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_tsa_refuses_what_is_not_a_timestamp_query(runtime: Runtime, emulators: EmulatorSet) -> None:
    url = runtime.ca("viettel").endpoints().tsa_url or ""
    assert httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert httpx.post(url, content=b"x", headers={"Content-Type": "application/timestamp-query"}).status_code == 400


# -- remote signing (delegated mode): the key stays at the provider ----------------------------------------


def _client(runtime: Runtime, emulators: EmulatorSet, provider: str, user_id: str) -> tuple[RemoteSigningClient, RemoteCredential]:
    state = emulators.state(provider)
    user = state.add_user(user_id, "Đỗ Văn Hải", "Kho bạc Nhà nước (TEST)")
    client = runtime.ca(provider).remote_signing()
    if isinstance(client, MisaClient):
        client.login(user_id, user.password, misa_otp(user))
    if isinstance(client, NacencommClient):
        return client, client.credential(user_id, str(user.idcts))  # Nacencomm's integer certificate id
    return client, client.credential(user_id)


def _wait(client: RemoteSigningClient, credential: RemoteCredential, transaction_id: str) -> RemoteStatus:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = client.poll(credential, transaction_id)
        if result.status is not RemoteStatus.PENDING:
            return result.status
        time.sleep(0.1)
    return RemoteStatus.PENDING


@pytest.mark.parametrize("provider", PROVIDERS)
def test_delegated_cades_around_the_providers_signature(runtime: Runtime, emulator_reset: EmulatorSet, provider: str,
                                                        tmp_path: Path) -> None:
    client, credential = _client(runtime, emulator_reset, provider, f"0790880{PROVIDERS.index(provider)}1234")
    cert = asn1_x509.Certificate.load(credential.chain_der[0])
    chain = [asn1_x509.Certificate.load(d) for d in credential.chain_der[1:]]
    intermediates = [c for c in chain if c.self_signed == "no"]
    content = "Ủy nhiệm chi UNC-2026-0042".encode()
    tbs = cades.prepare(cert, intermediates, content=content)
    transaction_id = client.start(credential, [DigestToSign("doc-1", "UNC-2026-0042.xml", tbs.dtbs_digest)], "Ký UNC")
    assert client.poll(credential, transaction_id).status is RemoteStatus.PENDING  # the phone has not answered yet
    assert _wait(client, credential, transaction_id) is RemoteStatus.SUCCESS
    [signature] = client.poll(credential, transaction_id).signatures
    der, _ = cades.finish(tbs, signature, cert, intermediates, SignatureScheme.RSA_PKCS1_V15, None, ltv.Level.B_B, None)
    roots = [asn1_x509.Certificate.load(d) for d in runtime.ca(provider).trust_anchors()]
    assert validate.validate_cms(der, roots, content).ok
    (tmp_path / "doc.p7s").write_bytes(der)
    (tmp_path / "doc").write_bytes(content)
    result = openssl_cms_verify(tmp_path / "doc.p7s", write_pem(tmp_path / "root.pem", roots[0].dump()), tmp_path / "doc")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("phone", "expected"), [("refuse", RemoteStatus.REJECTED), ("timeout", RemoteStatus.EXPIRED)])
def test_refusal_and_time_out_at_the_provider(runtime: Runtime, emulator_reset: EmulatorSet, provider: str,
                                              phone: str, expected: RemoteStatus) -> None:
    client, credential = _client(runtime, emulator_reset, provider, f"0790881{PROVIDERS.index(provider)}1234")
    emulator_reset.state(provider).set_phone(phone)
    transaction_id = client.start(credential, [DigestToSign("d", "d.pdf", hashlib.sha256(phone.encode()).digest())], "x")
    assert _wait(client, credential, transaction_id) is expected  # the emulators' transactions live 3 s in tests


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_revoked_certificate_is_refused_by_the_provider(runtime: Runtime, emulator_reset: EmulatorSet,
                                                          provider: str) -> None:
    client, credential = _client(runtime, emulator_reset, provider, f"0790882{PROVIDERS.index(provider)}1234")
    runtime.ca(provider).revoke(x509.load_der_x509_certificate(credential.chain_der[0]).serial_number)
    with pytest.raises(ProviderApiError):
        client.start(credential, [DigestToSign("d", "d.pdf", hashlib.sha256(b"x").digest())], "x")


# -- quirks, as the public material shows them -------------------------------------------------------------


def test_vnpt_answers_http_200_with_the_outcome_in_the_body(runtime: Runtime, emulators: EmulatorSet) -> None:
    base = runtime.ca("vnpt").endpoints().signing_api_url
    response = httpx.post(f"{base}/v1/credentials/get_certificate",
                          json={"sp_id": "kyso-vnpt", "sp_password": "wrong", "user_id": "x", "transaction_id": "t"})
    assert response.status_code == 200 and response.json()["status_code"] == 401
    assert response.json()["message"] == "SP_CREDENTIAL_INVALID"
    unknown = httpx.post(f"{base}/v1/signatures/sign/nope/status", content=b"")  # status by POST, empty body
    assert unknown.status_code == 200 and unknown.json()["status_code"] == 400


def test_vnpt_lists_the_organisation_seal_first_and_kyso_never_takes_it(runtime: Runtime,
                                                                         emulator_reset: EmulatorSet) -> None:
    user = emulator_reset.state("vnpt").add_user("0790886001234", "Lê Văn Tâm", "Kho bạc Nhà nước (TEST)", seal=True)
    assert user.seal is not None
    client = runtime.ca("vnpt").remote_signing()
    listed = client.http.post("/v1/credentials/get_certificate", json={
        "sp_id": client.client_id, "sp_password": client.client_secret, "user_id": user.user_id,
        "transaction_id": "t1"}).json()["data"]["user_certificates"]
    assert listed[0]["service_type"] == "ESEAL" and all(c["cert_status_code"] == "VALID" for c in listed)
    chosen = client.credential(user.user_id)
    assert chosen.credential_ref == f"{user.certificate.serial_number:x}"  # the person's, not the seal
    assert client.credential(user.user_id, f"{user.certificate.serial_number:x}").credential_ref == chosen.credential_ref
    with pytest.raises(ProviderApiError, match="organisation seal"):
        client.credential(user.user_id, f"{user.seal.certificate.serial_number:x}")
    runtime.ca("vnpt").revoke(user.certificate.serial_number)  # no valid personal certificate left
    with pytest.raises(ProviderApiError, match="no valid personal certificate"):
        client.credential(user.user_id)


def test_viettel_tokens_are_per_user_and_names_base64(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    client, credential = _client(runtime, emulator_reset, "viettel", "0790883001234")
    assert isinstance(client, ViettelClient)
    assert credential.credential_ref.startswith("0790883001234_")  # like 0123456789_2482540_20221017114147
    other_client, other = _client(runtime, emulator_reset, "viettel", "0790883002234")
    base = runtime.ca("viettel").endpoints().signing_api_url
    digest = base64.b64encode(hashlib.sha256(b"v").digest()).decode()
    body = {"client_id": client.client_id, "client_secret": client.client_secret, "credentialID": other.credential_ref,
            "numSignatures": 1, "description": "eA==", "documents": [{"document_id": "1", "document_name": "eA=="}],
            "hash": [digest], "hashAlgo": "2.16.840.1.101.3.4.2.1", "signAlgo": "1.2.840.113549.1.1.1", "async": 1}
    as_first = {"Authorization": f"Bearer {client._token(credential.user_id)}"}
    assert httpx.post(f"{base}/vtss/service/signHash", json=body, headers=as_first).status_code == 400  # not its credential
    body["credentialID"] = credential.credential_ref
    bad_name = {**body, "documents": [{"document_id": "1", "document_name": "not base64 at all!"}]}
    assert httpx.post(f"{base}/vtss/service/signHash", json=bad_name, headers=as_first).status_code == 400
    sha1 = {**body, "hashAlgo": "1.3.14.3.2.26"}
    assert httpx.post(f"{base}/vtss/service/signHash", json=sha1, headers=as_first).status_code == 400
    started = httpx.post(f"{base}/vtss/service/signHash", json=body, headers=as_first).json()
    status = httpx.post(f"{base}/vtss/service/requests/status", json={"transactionId": started["transactionId"]})
    assert (status.status_code, status.json()["code"]) == (401, 59033)  # the status call carries the bearer token
    status = httpx.post(f"{base}/vtss/service/requests/status", json={"transactionId": started["transactionId"]},
                        headers=as_first).json()
    assert status["status"] == "0"  # a string: "0" pending, "1" signed
    blocking = client.sign_blocking(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"v").digest())], "Ký")
    assert blocking.status is RemoteStatus.SUCCESS and len(blocking.signatures) == 1  # async 0 waits for the phone
    wrong = httpx.post(f"{base}/vtss/service/ras/v1/login", json={
        "client_id": client.client_id, "client_secret": "nope", "profile_id": client.PROFILE, "user_id": "x"})
    assert wrong.json()["code"] == 86024
    other_client.close()


def test_viettel_renews_a_users_token(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("viettel")
    state.token_ttl_seconds = 1.0
    try:
        client, credential = _client(runtime, emulator_reset, "viettel", "0790883003234")
        assert isinstance(client, ViettelClient)
        client.RENEW_MARGIN_SECONDS = 0.0
        first = client._token(credential.user_id)
        time.sleep(1.2)  # Viettel no longer honours it: the client logs in again for that user, no password
        transaction_id = client.start(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"r").digest())], "x")
        assert _wait(client, credential, transaction_id) is RemoteStatus.SUCCESS
        assert client._token(credential.user_id) != first
    finally:
        state.token_ttl_seconds = 3600.0


def test_viettel_register_extension_is_never_used(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    """Sole control: Viettel's registerExtension signs without a confirmation per signature; kyso never calls it."""
    client, credential = _client(runtime, emulator_reset, "viettel", "0790883004234")
    transaction_id = client.start(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"s").digest())], "x")
    assert _wait(client, credential, transaction_id) is RemoteStatus.SUCCESS
    assert emulator_reset.state("viettel").calls.get("registerExtension", 0) == 0
    assert "credentials/registerExtension" not in inspect.getsource(viettel_client)


def test_misa_wraps_replies_and_needs_the_remote_signing_token_and_a_second_factor(
        runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("misa")
    user = state.add_user("0790884001234", "Vũ Thị Hoa")
    base = runtime.ca("misa").endpoints().signing_api_url
    client = runtime.ca("misa").remote_signing()
    headers = {"x-clientId": client.client_id, "x-clientKey": client.client_secret}
    for prefix in ("", "/webdev"):  # the sandbox lives under /webdev/
        login = httpx.post(f"{base}{prefix}/api/auth/api/v1/auth/login-api", headers=headers,
                           json={"userName": user.user_id, "password": user.password})
        assert login.json()["status"]["code"] == 122 and login.json()["data"] is None  # a second factor is required
    two_factor_headers = {"clientId": client.client_id, "clientKey": client.client_secret}  # no "x-" here
    as_string = httpx.post(f"{base}/api/auth/api/v1/auth/two-factor-auth", headers=two_factor_headers,
                           json={"userName": user.user_id, "code": misa_otp(user), "otpType": "SMS"})
    assert as_string.status_code == 400  # otpType is an integer
    tokens = httpx.post(f"{base}/api/auth/api/v1/auth/two-factor-auth", headers=two_factor_headers,
                        json={"userName": user.user_id, "code": misa_otp(user), "otpType": 0,
                              "remember": False}).json()["data"]
    certificates = f"{base}/external/esrm/service/general/api/v1/Certificates/by-userId"
    plain = httpx.get(certificates, headers={**headers, "AuthorizationRM": f"Bearer {tokens['accessToken']}"})
    assert (plain.status_code, plain.json()["status"]["code"]) == (401, "e2001")
    rm = {**headers, "AuthorizationRM": f"Bearer {tokens['remoteSigningAccessToken']}"}
    [cert] = httpx.get(certificates, headers=rm).json()["data"]
    assert cert["certiticateChain"] and cert["isAutoSign"] is False
    assert str(uuid.UUID(cert["keyAlias"])) == cert["keyAlias"]  # a GUID
    state.set_phone("refuse")
    started = httpx.post(f"{base}/external/esrm/service/signing/api/v1/Signing/hash", headers=rm, json={
        "DataToBeDisplayed": "<b>UNC</b>", "UserId": user.user_id, "CertAlias": cert["keyAlias"],
        "Documents": [{"DocumentId": "1", "FileToSign": base64.b64encode(hashlib.sha256(b"m").digest()).decode(),
                       "DocumentName": "UNC"}]}).json()["data"]
    time.sleep(0.4)
    failed = httpx.get(f"{base}/external/esrm/service/signing/api/v1/Signing/status/{started['transactionId']}",
                       headers=rm)
    assert failed.status_code == 200 and failed.json()["data"]["status"] == "FAILED"  # HTTP 200 even on failure


def test_misa_refreshes_its_60_minute_token_until_the_provider_revokes(runtime: Runtime,
                                                                        emulator_reset: EmulatorSet) -> None:
    state = emulator_reset.state("misa")
    state.token_ttl_seconds = 0.5
    try:
        client, credential = _client(runtime, emulator_reset, "misa", "0790884002234")
        kept = client.session_state(credential.user_id)
        time.sleep(0.7)  # the token is dead: a new client resumes the kept session and refreshes on 401
        resumed = runtime.ca("misa").remote_signing()
        resumed.resume(credential.user_id, kept)
        before = state.calls.get("refreshtoken", 0)
        transaction_id = resumed.start(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"t").digest())], "x")
        assert state.calls["refreshtoken"] == before + 1 and resumed.session_state(credential.user_id) != kept
        assert _wait(resumed, credential, transaction_id) is RemoteStatus.SUCCESS
        state.revoked_sessions.add(credential.user_id)  # MISA revokes the session: no more signing
        with pytest.raises(ProviderSessionRevoked):
            resumed.start(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"u").digest())], "x")
    finally:
        state.token_ttl_seconds = 3600.0


def test_misa_auto_sign_certificates_are_refused(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    """Sole control: a certificate MISA flags ``isAutoSign`` signs without the signer's confirmation."""
    state = emulator_reset.state("misa")
    user = state.add_user("0790884003234", "Đặng Văn Nam")
    state.auto_sign_users.add(user.user_id)
    client = runtime.ca("misa").remote_signing()
    assert isinstance(client, MisaClient)
    client.login(user.user_id, user.password, misa_otp(user))
    with pytest.raises(SoleControlRefused):
        client.credential(user.user_id)


def test_nacencomm_answers_quoted_strings_empty_until_done(runtime: Runtime, emulator_reset: EmulatorSet) -> None:
    client, credential = _client(runtime, emulator_reset, "nacencomm", "0790885001234")
    assert isinstance(client, NacencommClient)
    state = emulator_reset.state("nacencomm")
    state.set_phone("timeout")
    code = client.start(credential, [DigestToSign("1", "UNC", hashlib.sha256(b"n").digest())], "x")
    assert state.get(code).title == "UNC"  # type: ignore[union-attr] # Keyhethong's fourth part: the app's title
    base = runtime.ca("nacencomm").endpoints().signing_api_url
    pending = httpx.post(f"{base}/api/APISigncore/Layketquaky", params={"Code": code})
    assert pending.text == '""'  # a JSON-quoted empty string: pending, never success
    assert httpx.get(f"{base}/api/APISigncore/Layketquaky", params={"Code": code}).status_code == 405  # POSTs only
    assert client.poll(credential, code).status is RemoteStatus.PENDING
    assert client.cancel(code)
    assert client.poll(credential, code).status is RemoteStatus.REJECTED  # Trangthaiky -1
    assert state.get(code).acknowledged  # type: ignore[union-attr] # Capnhattrangthaihoantat_Code after the result
