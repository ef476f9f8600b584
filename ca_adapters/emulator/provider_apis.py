"""Each provider's remote-signing API as its public material shows it.

The shapes and quirks are the point: an adapter that works against these would need only the
real host and credentials. Whatever no public source shows (rejection and expiry codes, error
bodies, Nacencomm's hash type and authentication) is labelled "modelled" where it is answered.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
import uuid
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.state import CallbackTarget, EmulatorState, ProviderUser, Transaction

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[no-any-return]


def _same(a: Any, b: str) -> bool:
    return isinstance(a, str) and hmac.compare_digest(a.encode(), b.encode())


def _usable(state: EmulatorState, cert: x509.Certificate) -> bool:
    status = state.ca.issued().get(cert.serial_number)
    return status is not None and not status.revoked


def _digest(raw: str, *, hex_encoded: bool = False) -> bytes | None:
    try:
        value = bytes.fromhex(raw) if hex_encoded else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        return None
    return value if len(value) == 32 else None


def signing_api_router(provider: str, state: EmulatorState) -> APIRouter:
    return {"vnpt": _vnpt, "viettel": _viettel, "misa": _misa, "nacencomm": _nacencomm}[provider](state)


def callback_sender(provider: str) -> Any:
    """How the provider delivers one ended transaction to a registered target (None: it never calls back)."""
    return {"vnpt": _vnpt_callback, "viettel": _viettel_callback, "misa": _misa_callback}.get(provider)


# -- VNPT SmartCA, service-provider API "SP769" ---------------------------------------------------------

VNPT_PERSONAL = "SMARTCA"  # modelled: only "ESEAL" (an organisation seal) is published
VNPT_MODELLED_REJECTED = "sig_rejected"
VNPT_MODELLED_EXPIRED = "sig_expired"


def _vnpt_signed_files(tx: Transaction) -> list[dict[str, Any]]:
    return [{"doc_id": doc, "signature_value": _b64(sig), "timestamp_signature": None}
            for (doc, _), sig in zip(tx.digests, tx.signatures)]


def _vnpt_message(state: EmulatorState, tx: Transaction) -> str:
    if tx.outcome == "approved":
        return "SUCCESS"  # integrators poll until they see it
    if tx.outcome == "refused" or tx.cancelled:
        return VNPT_MODELLED_REJECTED
    return VNPT_MODELLED_EXPIRED if state.expired(tx) else "sig_wait_for_user_confirm"


def _vnpt(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/v1")
    client = api_client(state.ca.directory)

    def reply(status_code: int, message: str, data: Any = None) -> dict[str, Any]:
        # Always HTTP 200: the outcome is status_code in the body.
        return {"status_code": status_code, "message": message, "data": data}

    def authenticate(body: dict[str, Any]) -> dict[str, Any] | None:
        if not _same(body.get("sp_id"), client.client_id) or not _same(body.get("sp_password"), client.client_secret):
            return reply(401, "SP_CREDENTIAL_INVALID")
        return None

    def entry(user: ProviderUser, cert: x509.Certificate, service_type: str, name: str) -> dict[str, Any]:
        usable = _usable(state, cert)
        return {
            "service_type": service_type, "service_name": name, "cert_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(cert.serial_number))),
            "cert_status": "Đang hoạt động" if usable else "Đã thu hồi",
            "cert_status_code": "VALID" if usable else "REVOKED",  # "REVOKED" modelled
            "serial_number": f"{cert.serial_number:x}", "cert_subject": cert.subject.rfc4514_string(),
            "cert_valid_from": cert.not_valid_before_utc.isoformat(), "cert_valid_to": cert.not_valid_after_utc.isoformat(),
            "cert_data": _b64(_der(cert)), "transaction_id": secrets.token_hex(8),
            "chain_data": {"ca_cert": _b64(_der(user.chain[0])), "root_cert": _b64(_der(user.chain[1]))},
        }

    @router.post("/credentials/get_certificate")
    def get_certificate(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        if user is None:
            return reply(200, "success", {"user_certificates": []})
        certs = []
        if user.seal is not None:  # the organisation's seal comes first: a blind pick would take it
            certs.append(entry(user, user.seal.certificate, "ESEAL", "SmartCA eSeal"))
        certs.append(entry(user, user.certificate, VNPT_PERSONAL, "SmartCA cá nhân"))
        if body.get("serial_number"):
            certs = [c for c in certs if c["serial_number"] == str(body["serial_number"]).lower()]
        return reply(200, "success", {"user_certificates": certs})

    @router.post("/signatures/sign")
    def sign(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        files = body.get("sign_files")
        transaction_id = body.get("transaction_id")
        if user is None or not isinstance(files, list) or not files or not isinstance(transaction_id, str):
            return reply(400, "BAD_REQUEST")
        cert = user.certificate
        if user.seal is not None and str(body.get("serial_number", "")).lower() == f"{user.seal.certificate.serial_number:x}":
            cert = user.seal.certificate
        if not _usable(state, cert):
            return reply(403, "CREDENTIAL_STATUS_INVALID")
        digests = []
        for f in files:
            digest = _digest(str(f.get("data_to_be_signed", "")), hex_encoded=True)
            if digest is None or f.get("sign_type") != "hash":
                return reply(400, "BAD_REQUEST")
            digests.append((str(f.get("doc_id", "")), digest))
        tx = state.start(user.user_id, digests, transaction_id, serial=cert.serial_number, callback=True,
                         title=str(body.get("transaction_desc", "")))
        return reply(200, "sig_wait_for_user_confirm", {"transaction_id": tx.id, "tran_code": secrets.token_hex(3)})

    @router.post("/signatures/sign/{transaction_id}/status")
    def status(transaction_id: str) -> dict[str, Any]:
        # Status by POST with an empty body: no SP credentials are sent here.
        tx = state.get(transaction_id)
        if tx is None:
            return reply(400, "BAD_REQUEST")
        signed = tx.outcome == "approved"
        return reply(200, _vnpt_message(state, tx),
                     {"transaction_id": tx.id, "signatures": _vnpt_signed_files(tx) if signed else None})

    return router


def vnpt_callback_body(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    """§3.5 of the integration document."""
    signed = tx.outcome == "approved"
    return {"sp_id": api_client(state.ca.directory).client_id, "status_code": 200, "message": _vnpt_message(state, tx),
            "transaction_id": tx.id, "signed_files": _vnpt_signed_files(tx) if signed else []}


def _vnpt_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    # No signature or token is published for §3.5, so none is sent: the URL carries the integrator's secret.
    return httpx.post(target.url, json=vnpt_callback_body(state, tx), timeout=10).status_code


# -- Viettel-CA MySign -----------------------------------------------------------------------------------

VIETTEL_BAD_CLIENT, VIETTEL_BAD_USER, VIETTEL_BAD_TOKEN, VIETTEL_BAD_SECRET = 58007, 58008, 59033, 86024
VIETTEL_MODELLED_BAD_INPUT = 40000
"""Modelled: no code for malformed input is public."""


def _viettel_credential_id(user: ProviderUser) -> str:
    """Like ``0123456789_2482540_20221017114147``: the user, a number, the issue time."""
    cert = user.certificate
    return f"{user.user_id}_{cert.serial_number % 10_000_000}_{cert.not_valid_before_utc:%Y%m%d%H%M%S}"


def _viettel_result(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    if tx.outcome == "approved":
        return {"status": "1", "transactionId": tx.id, "signatures": [_b64(s) for s in tx.signatures]}
    if tx.outcome == "refused" or tx.cancelled:
        return {"status": 4002, "transactionId": tx.id, "signatures": None}  # numeric: one integrator's table
    if state.expired(tx):
        return {"status": 4001, "transactionId": tx.id, "signatures": None}
    return {"status": "0", "transactionId": tx.id, "signatures": None}


def _viettel(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/vtss/service")
    client = api_client(state.ca.directory)
    tokens: dict[str, tuple[str, float]] = {}

    def error(code: int, message: str) -> JSONResponse:
        # Modelled body: the codes are published, the envelope is not.
        return JSONResponse({"code": code, "message": message}, status_code=401 if code == VIETTEL_BAD_TOKEN else 400)

    def bearer_user(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        entry = tokens.get(authorization.removeprefix("Bearer "))
        return entry[0] if entry and entry[1] > time.monotonic() else None

    @router.post("/ras/v1/login")
    def login(body: dict[str, Any] = Body(...)) -> Any:
        if not _same(body.get("client_id"), client.client_id):
            return error(VIETTEL_BAD_CLIENT, "client not found")
        if not _same(body.get("client_secret"), client.client_secret):
            return error(VIETTEL_BAD_SECRET, "client secret is wrong")
        if state.user(str(body.get("user_id", ""))) is None:
            return error(VIETTEL_BAD_USER, "user not found")
        token = secrets.token_urlsafe(24)
        tokens[token] = (str(body["user_id"]), time.monotonic() + state.token_ttl_seconds)
        return {"access_token": token, "refresh_token": "", "token_type": "Bearer",
                "expires_in": str(int(state.token_ttl_seconds))}

    @router.post("/certificates/info")
    def certificates(body: dict[str, Any] = Body(...), authorization: str | None = Header(None)) -> Any:
        user_id = bearer_user(authorization)
        if user_id is None or user_id != body.get("user_id"):
            return error(VIETTEL_BAD_TOKEN, "token not valid for this user")
        user = state.user(user_id)
        assert user is not None
        cert = user.certificate
        stamp = "%Y%m%d%H%M%S+0000"
        return [{
            "credential_id": _viettel_credential_id(user), "description": "MySign cá nhân",
            "key": {"status": "enabled", "algo": [RSA_OID], "len": "2048", "curve": ""},
            "cert": {"status": "valid" if _usable(state, cert) else "revoked",
                     "certificates": [_b64(_der(c)) for c in (cert, *user.chain)],
                     "issuerDN": cert.issuer.rfc4514_string(), "serialNumber": f"{cert.serial_number:x}",
                     "subjectDN": cert.subject.rfc4514_string(),
                     "validFrom": cert.not_valid_before_utc.strftime(stamp),
                     "validTo": cert.not_valid_after_utc.strftime(stamp)},
            "authMode": "implicit", "multisign": "2147483647", "scal": "2",
        }]

    @router.post("/signHash")
    def sign_hash(body: dict[str, Any] = Body(...), authorization: str | None = Header(None)) -> Any:
        user_id = bearer_user(authorization)
        if user_id is None:
            return error(VIETTEL_BAD_TOKEN, "invalid token")
        user = state.user(user_id)
        assert user is not None
        if body.get("credentialID") != _viettel_credential_id(user):
            return error(VIETTEL_MODELLED_BAD_INPUT, "credentialID not found for this user")
        if not _usable(state, user.certificate):
            return {"status": 13004, "message": "certificate expired or revoked"}
        if body.get("hashAlgo") != SHA256_OID:
            return error(VIETTEL_MODELLED_BAD_INPUT, "only SHA-256 (2.16.840.1.101.3.4.2.1)")
        hashes, documents = body.get("hash"), body.get("documents")
        if not isinstance(hashes, list) or not isinstance(documents, list) or len(hashes) != len(documents) \
                or not hashes or body.get("numSignatures") != len(hashes):
            return error(VIETTEL_MODELLED_BAD_INPUT, "hash, documents and numSignatures disagree")
        digests = []
        for raw, doc in zip(hashes, documents):
            digest = _digest(str(raw))
            try:
                name = base64.b64decode(str(doc.get("document_name", "")), validate=True).decode()
            except (ValueError, binascii.Error, UnicodeDecodeError):
                name = ""
            if digest is None or not name or len(name) >= 100:
                return error(VIETTEL_MODELLED_BAD_INPUT,
                             "each hash is base64 SHA-256; each document_name base64 UTF-8 under 100 characters")
            digests.append((str(doc.get("document_id", "")), digest))
        mode = body.get("async", 0)
        tx = state.start(user.user_id, digests, callback=mode == 3)
        if mode == 0:
            deadline = time.monotonic() + min(120.0, state.ttl_seconds + 1)
            while (current := state.get(tx.id)) is not None and current.outcome is None and not state.expired(current) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            return _viettel_result(state, state.get(tx.id) or tx)
        return {"status": "0", "transactionId": tx.id}

    @router.post("/requests/status")
    def request_status(body: dict[str, Any] = Body(...), authorization: str | None = Header(None)) -> Any:
        user_id = bearer_user(authorization)
        if user_id is None:
            return error(VIETTEL_BAD_TOKEN, "invalid token")
        tx = state.get(str(body.get("transactionId", "")))
        if tx is None or tx.user_id != user_id:
            return error(VIETTEL_MODELLED_BAD_INPUT, "unknown transactionId")
        return _viettel_result(state, tx)

    @router.post("/credentials/registerExtension")
    def register_extension(body: dict[str, Any] = Body(...)) -> Any:
        # Offered by Viettel: signing without a confirmation per signature. Counted so a test can show
        # kyso never calls it (sole control).
        state.count("registerExtension")
        return {"status": "1"}

    return router


def viettel_callback_body(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    result = _viettel_result(state, tx)  # refusal and expiry codes modelled; "1" published
    return {"meta_data": {"request_id": f"req-{tx.id}", "transaction_id": tx.id, "status": str(result["status"])},
            "data": {"results": [{"document_id": doc, "signature": _b64(sig)}
                                 for (doc, _), sig in zip(tx.digests, tx.signatures)]}}


def _viettel_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    """``async: 3``: a token from the integrator's client-credentials endpoint, then the results."""
    token = httpx.post(target.token_url or "", data={"grant_type": "client_credentials", "client_id": target.client_id,
                                                     "client_secret": target.client_secret}, timeout=10)
    if token.status_code != 200:
        return token.status_code
    answer = httpx.post(target.url, json=viettel_callback_body(state, tx), timeout=10,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    return answer.status_code if answer.status_code != 200 or answer.json().get("status_code") != "00" else 200


# -- MISA eSign ---------------------------------------------------------------------------------------------

MISA_SECOND_FACTOR = 122
MISA_MODELLED_CODES = {"client": 2000, "token": 2001, "login": 1001, "otp": 1002, "input": 3000, "alias": 3001,
                       "inactive": 3002, "transaction": 3004, "refresh": 2003}
"""Modelled: only 122 (second factor) and e2001 (the plain access token used to sign) are published."""
MISA_MODELLED_REJECTED, MISA_MODELLED_EXPIRED = 4002, 4001


def misa_alias(cert: x509.Certificate) -> str:
    """``keyAlias`` is a GUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"misa:{cert.serial_number}"))


def _misa_ok(data: Any) -> dict[str, Any]:
    return {"status": {"type": 0, "code": 0, "error": None, "errorCode": 0, "devMsg": "", "userMsg": ""}, "data": data}


def _misa_fail(http: int, code: int, message: str, published: str | None = None) -> JSONResponse:
    return JSONResponse({"status": {"type": 1, "code": published or code, "error": message, "errorCode": code,
                                    "devMsg": message, "userMsg": message}, "data": None}, status_code=http)


def _misa_status(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    body: dict[str, Any] = {"transactionId": tx.id, "errorCode": None, "errorDescription": None, "signatures": []}
    if tx.outcome == "approved":
        body.update(status="SUCCESS", signatures=[{"documentId": d, "signature": _b64(s)}
                                                  for (d, _), s in zip(tx.digests, tx.signatures)])
    elif tx.cancelled:
        body.update(status="CANCELLED")
    elif tx.outcome == "refused":
        body.update(status="FAILED", errorCode=MISA_MODELLED_REJECTED, errorDescription="the signer refused")
    elif state.expired(tx):  # modelled: MISA documents no expiry
        body.update(status="FAILED", errorCode=MISA_MODELLED_EXPIRED, errorDescription="not confirmed in time")
    else:
        body.update(status="PENDING")
    return body


def _misa(state: EmulatorState) -> APIRouter:
    outer = APIRouter()
    router = APIRouter()
    client = api_client(state.ca.directory)
    sessions: dict[str, tuple[str, str, float]] = {}  # token -> (user, kind, expiry)

    def client_ok(request: Request) -> bool:
        # The published page spells them with "x-" and, for the second factor, without: accept both.
        cid = request.headers.get("x-clientId") or request.headers.get("clientId")
        key = request.headers.get("x-clientKey") or request.headers.get("clientKey")
        return _same(cid, client.client_id) and _same(key, client.client_secret)

    def tokens_for(user_id: str) -> dict[str, Any]:
        access, remote, refresh = (secrets.token_urlsafe(24) for _ in range(3))
        expiry = time.monotonic() + state.token_ttl_seconds
        sessions[access] = (user_id, "access", expiry)
        sessions[remote] = (user_id, "remote", expiry)
        sessions[refresh] = (user_id, "refresh", time.monotonic() + 90 * 86400)
        return _misa_ok({"accessToken": access, "remoteSigningAccessToken": remote, "tokenType": "Bearer",
                         "expiresIn": int(state.token_ttl_seconds), "refreshToken": refresh, "user": {"id": user_id}})

    def remote_user(request: Request) -> str | JSONResponse:
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        entry = sessions.get(request.headers.get("AuthorizationRM", "").removeprefix("Bearer "))
        if entry is None or entry[2] < time.monotonic() or entry[1] != "remote" or entry[0] in state.revoked_sessions:
            return _misa_fail(401, MISA_MODELLED_CODES["token"], "AuthorizationRM needs a live remoteSigningAccessToken",
                              "e2001")
        return entry[0]

    @router.post("/api/auth/api/v1/auth/login-api")
    def login(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        state.count("login")
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        user = state.user(str(body.get("userName", "")))
        if user is None or not _same(body.get("password"), user.password):
            return _misa_fail(400, MISA_MODELLED_CODES["login"], "wrong user name or password")
        return _misa_fail(200, MISA_SECOND_FACTOR, "two-factor authentication required")

    @router.post("/api/auth/api/v1/auth/two-factor-auth")
    def two_factor(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        if body.get("otpType") not in (0, 1) or isinstance(body.get("otpType"), bool):
            return _misa_fail(400, MISA_MODELLED_CODES["input"], "otpType is 0 (SMS or e-mail) or 1 (app)")
        user = state.user(str(body.get("userName", "")))
        if user is None or not _same(str(body.get("code", "")), misa_otp(user)):
            return _misa_fail(400, MISA_MODELLED_CODES["otp"], "wrong code")
        state.revoked_sessions.discard(user.user_id)
        return tokens_for(user.user_id)

    @router.post("/api/auth/api/v1/auth/refreshtoken")
    def refresh(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        state.count("refreshtoken")
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        entry = sessions.pop(str(body.get("refreshToken", "")), None)  # a refresh token is used once (modelled)
        if entry is None or entry[1] != "refresh" or entry[2] < time.monotonic() or entry[0] in state.revoked_sessions:
            return _misa_fail(401, MISA_MODELLED_CODES["refresh"], "refresh token revoked or unknown")
        return tokens_for(entry[0])

    @router.post("/api/auth/api/v1/auth/resend-otp-auth")
    def resend(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        return _misa_ok(None)

    def certificate_entry(user: ProviderUser) -> dict[str, Any]:
        cert = user.certificate
        active = "ACTIVE" if _usable(state, cert) else "INACTIVE"
        return {"userId": user.user_id, "keyAlias": misa_alias(cert), "keyStatus": active, "certStatus": active,
                "appName": "MISA eSign", "isAutoSign": user.user_id in state.auto_sign_users, "emailName": f"{user.user_id}@example.vn",
                "certificate": _b64(_der(cert)), "certiticateChain": [_b64(_der(c)) for c in (cert, *user.chain)],
                "effectiveDate": cert.not_valid_before_utc.isoformat(),
                "expirationDate": cert.not_valid_after_utc.isoformat()}

    @router.get("/external/esrm/service/general/api/v1/Certificates/by-userId")
    def by_user(request: Request) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        user = state.user(who)
        assert user is not None
        return _misa_ok([certificate_entry(user)])

    @router.get("/external/esrm/service/general/api/v1/Certificates/by-certId")
    def by_cert(request: Request, certId: str) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        user = state.user(who)
        assert user is not None
        return _misa_ok(certificate_entry(user) if certId == misa_alias(user.certificate) else None)

    @router.post("/external/esrm/service/signing/api/v1/Signing/hash")
    def sign_hash(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        user = state.user(who)
        assert user is not None
        if body.get("UserId") != who or body.get("CertAlias") != misa_alias(user.certificate):
            return _misa_fail(400, MISA_MODELLED_CODES["alias"], "certificate alias not found for this user")
        if not _usable(state, user.certificate):
            return _misa_fail(400, MISA_MODELLED_CODES["inactive"], "certificate inactive")
        documents = body.get("Documents")
        if not isinstance(documents, list) or not documents:
            return _misa_fail(400, MISA_MODELLED_CODES["input"], "Documents is required")
        digests = []
        for doc in documents:
            digest = _digest(str(doc.get("FileToSign", "")))
            if digest is None or len(str(doc.get("DocumentId", ""))) > 36 or len(str(doc.get("DocumentName", ""))) > 100:
                return _misa_fail(400, MISA_MODELLED_CODES["input"],
                                  "DocumentId ≤ 36, DocumentName ≤ 100, FileToSign a base64 SHA-256")
            digests.append((str(doc["DocumentId"]), digest))
        return _misa_ok({"transactionId": state.start(who, digests, callback=True).id})

    @router.get("/external/esrm/service/signing/api/v1/Signing/status/{transaction_id}")
    def status(transaction_id: str, request: Request) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        tx = state.get(transaction_id)
        if tx is None or tx.user_id != who:
            return _misa_fail(404, MISA_MODELLED_CODES["transaction"], "transaction not found")
        return _misa_ok(_misa_status(state, tx))  # HTTP 200 even when the signing failed

    # The sandbox lives under /webdev/; production at the host's root: serve both.
    outer.include_router(router)
    outer.include_router(router, prefix="/webdev")
    return outer


def misa_callback_body(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    return {"messageId": str(uuid.uuid4()), "clientId": api_client(state.ca.directory).client_id, "extraData": None,
            **{k: v for k, v in _misa_status(state, tx).items() if k != "errorDescription"}}


def _misa_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    answer = httpx.post(target.url, json=misa_callback_body(state, tx), timeout=10)
    return answer.status_code if answer.status_code != 200 or answer.json().get("errorCode") not in (0, "0") else 200


def misa_otp(user: ProviderUser) -> str:
    """The emulated second factor: a fixed code per user, derived from its password (test only)."""
    return str(int.from_bytes(user.password.encode()[:4], "big") % 1_000_000).zfill(6)


# -- Nacencomm CA2 (integrators' code only) ----------------------------------------------------------------

NACENCOMM_MODELLED_HASH_TYPE = "HASH"
NACENCOMM_DOCUMENT_TYPES = ("XML_HD", "XML", "PDF", "Text")
NACENCOMM_MODELLED_EXPIRED = 3
NACENCOMM_MODELLED_NETWORK = ("127.0.0.1", "::1")
"""Modelled authentication: no secret is public, so the caller's address and its system code."""


def _quoted(text: str, status: int = 200) -> JSONResponse:
    """Every reply is a JSON-quoted string."""
    return JSONResponse(text, status_code=status)


def _nacencomm(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/api/APISigncore")
    client = api_client(state.ca.directory)

    def from_network(request: Request) -> bool:
        return request.client is not None and request.client.host in NACENCOMM_MODELLED_NETWORK

    @router.post("/Guiyeucauky_Mobilesign")
    def send(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not from_network(request) or not _same(body.get("Mahethong"), client.client_id):
            return _quoted("ERR:HETHONG", 401)  # modelled
        display = str(body.get("Keyhethong", "")).split("|")
        if len(display) != 4:
            return _quoted("ERR:KEYHETHONG", 400)  # "{id}|{ref}|{email}|{title}", modelled error
        user = state.user(str(body.get("Masothue", "")))
        if user is None or str(body.get("Serial", "")).lower() != f"{user.certificate.serial_number:x}":
            return _quoted("ERR:CERT", 400)
        if not _usable(state, user.certificate):
            return _quoted("ERR:CERT_REVOKED", 400)
        if body.get("Type") in NACENCOMM_DOCUMENT_TYPES:
            return _quoted("ERR:TYPE", 400)  # whole documents are not emulated: kyso sends digests
        digest = _digest(str(body.get("Cleartext", "")))
        if body.get("Type") != NACENCOMM_MODELLED_HASH_TYPE or digest is None:
            return _quoted("ERR:INPUT", 400)
        return _quoted(state.start(user.user_id, [("1", digest)], title=display[3]).id)

    @router.post("/Layketquaky")
    def result(Code: str) -> JSONResponse:
        tx = state.get(Code)
        if tx is None:
            return _quoted("ERR:CODE", 400)
        if tx.outcome is None and not tx.cancelled and not state.expired(tx):
            return _quoted("")  # empty while the user has not confirmed: never a success
        trangthai = 1 if tx.outcome == "approved" else -1 if tx.cancelled else 2 if tx.outcome == "refused" \
            else NACENCOMM_MODELLED_EXPIRED
        # The result's fields besides Trangthaiky are modelled.
        return _quoted(json.dumps({"Code": tx.id, "Trangthaiky": trangthai,
                                   "Chuky": _b64(tx.signatures[0]) if trangthai == 1 else None,
                                   "Thongbao": {1: "Đã ký", -1: "Đã hủy", 2: "Từ chối ký"}.get(trangthai, "Hết hạn")}))

    @router.post("/Xoayeucauky_Code")
    def cancel(Code: str, phanloaiky: int = 1) -> JSONResponse:
        return _quoted("OK" if state.cancel(Code) else "ERR:CODE", 200)

    @router.post("/Capnhattrangthaihoantat_Code")
    def acknowledge(Code: str) -> JSONResponse:
        tx = state.get(Code)
        if tx is None:
            return _quoted("ERR:CODE", 400)
        tx.acknowledged = True
        return _quoted("OK")

    @router.post("/Getcert")
    def get_cert(idcts: int) -> JSONResponse:
        for user_id in state.user_ids():
            user = state.user(user_id)
            if user is not None and user.idcts == idcts:
                return _quoted(_b64(_der(user.certificate)))
        return _quoted("ERR:CERT", 404)

    return router
