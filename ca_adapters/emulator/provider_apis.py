"""Each provider's remote-signing API as its public material describes it (../shared/CA_APIS.md).

The shapes and quirks are the point: an adapter that works against these would need only the
real host and credentials. Where nothing public exists the model is marked [assumed].
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.state import EmulatorState, ProviderUser, Transaction

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(cert: Any) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[no-any-return]


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def _usable(state: EmulatorState, user: ProviderUser) -> bool:
    status = state.ca.issued().get(user.certificate.serial_number)
    return status is not None and not status.revoked


def _digest(raw: str, *, hex_encoded: bool = False) -> bytes | None:
    try:
        value = bytes.fromhex(raw) if hex_encoded else base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        return None
    return value if len(value) == 32 else None


def signing_api_router(provider: str, state: EmulatorState) -> APIRouter:
    return {"vnpt": _vnpt, "viettel": _viettel, "misa": _misa, "nacencomm": _nacencomm}[provider](state)


# -- VNPT SmartCA, service-provider API "SP769" ---------------------------------------------------------


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

    @router.post("/credentials/get_certificate")
    def get_certificate(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        if user is None:
            return reply(200, "success", {"user_certificates": []})
        cert = user.certificate
        return reply(200, "success", {"user_certificates": [{
            "service_type": "SMARTCA", "cert_id": f"{cert.serial_number:x}",
            "cert_status": "Đang hoạt động" if _usable(state, user) else "Đã thu hồi",
            "serial_number": f"{cert.serial_number:x}", "cert_subject": cert.subject.rfc4514_string(),
            "cert_valid_from": cert.not_valid_before_utc.isoformat(), "cert_valid_to": cert.not_valid_after_utc.isoformat(),
            "cert_data": _b64(_der(cert)),
            "chain_data": {"ca_cert": _b64(_der(user.chain[0])), "root_cert": _b64(_der(user.chain[1]))},
        }]})

    @router.post("/signatures/sign")
    def sign(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        files = body.get("sign_files")
        transaction_id = body.get("transaction_id")
        if user is None or not isinstance(files, list) or not files or not isinstance(transaction_id, str):
            return reply(400, "BAD_REQUEST")
        if not _usable(state, user):
            return reply(403, "CREDENTIAL_STATUS_INVALID")
        digests = []
        for f in files:
            digest = _digest(str(f.get("data_to_be_signed", "")), hex_encoded=True)
            if digest is None or f.get("sign_type") != "hash":
                return reply(400, "BAD_REQUEST")
            digests.append((str(f.get("doc_id", "")), digest))
        tx = state.start(user.user_id, digests, transaction_id)
        return reply(200, "sig_wait_for_user_confirm", {"transaction_id": tx.id, "tran_code": secrets.token_hex(3)})

    @router.post("/signatures/sign/{transaction_id}/status")
    def status(transaction_id: str) -> dict[str, Any]:
        # Status by POST with an empty body: no SP credentials are sent here.
        tx = state.get(transaction_id)
        if tx is None:
            return reply(400, "BAD_REQUEST")
        if tx.outcome == "approved":
            return reply(200, "success", {"transaction_id": tx.id, "signatures": [
                {"doc_id": doc, "signature_value": _b64(sig), "timestamp_signature": None}
                for (doc, _), sig in zip(tx.digests, tx.signatures)]})
        message = "sig_rejected" if tx.outcome == "refused" else "sig_expired" if state.expired(tx) \
            else "sig_wait_for_user_confirm"  # [assumed] message names for refusal and expiry
        return reply(200, message, {"transaction_id": tx.id, "signatures": None})

    return router


# -- Viettel-CA MySign -----------------------------------------------------------------------------------


def _viettel(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/vtss/service")
    client = api_client(state.ca.directory)
    tokens: dict[str, tuple[str, float]] = {}

    def bearer_user(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        entry = tokens.get(authorization.removeprefix("Bearer "))
        return entry[0] if entry and entry[1] > time.monotonic() else None

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"code": status, "message": message}, status_code=401 if status == 401 else 400)

    @router.post("/ras/v1/login")
    def login(body: dict[str, Any] = Body(...)) -> Any:
        if not _same(body.get("client_id"), client.client_id) or not _same(body.get("client_secret"), client.client_secret):
            return error(401, "invalid client")
        if state.user(str(body.get("user_id", ""))) is None:
            return error(400, "unknown user")
        token = secrets.token_urlsafe(24)
        tokens[token] = (str(body["user_id"]), time.monotonic() + 3600)
        return {"access_token": token, "refresh_token": "", "token_type": "Bearer", "expires_in": "3600"}

    @router.post("/certificates/info")
    def certificates(body: dict[str, Any] = Body(...), authorization: str | None = Header(None)) -> Any:
        user_id = bearer_user(authorization)
        if user_id is None or user_id != body.get("user_id"):
            return error(401, "token not valid for this user")
        user = state.user(user_id)
        assert user is not None
        cert = user.certificate
        stamp = "%Y%m%d%H%M%S+0000"
        return [{
            "credential_id": f"{cert.serial_number:x}",
            "key": {"status": "enabled", "algo": [RSA_OID], "len": "2048"},
            "cert": {"status": "valid" if _usable(state, user) else "revoked",
                     "certificates": [_b64(_der(c)) for c in (cert, *user.chain)],
                     "issuerDN": cert.issuer.rfc4514_string(), "serialNumber": f"{cert.serial_number:x}",
                     "subjectDN": cert.subject.rfc4514_string(),
                     "validFrom": cert.not_valid_before_utc.strftime(stamp),
                     "validTo": cert.not_valid_after_utc.strftime(stamp)},
            "authMode": "implicit", "multisign": 50, "scal": "2",
        }]

    def result(tx: Transaction) -> dict[str, Any]:
        if tx.outcome == "approved":
            return {"status": 1, "transactionId": tx.id, "signatures": [_b64(s) for s in tx.signatures]}
        status = 4002 if tx.outcome == "refused" else 4001 if state.expired(tx) else 4000
        return {"status": status, "transactionId": tx.id, "signatures": None}

    @router.post("/signHash")
    def sign_hash(body: dict[str, Any] = Body(...), authorization: str | None = Header(None)) -> Any:
        user_id = bearer_user(authorization)
        if user_id is None:
            return error(401, "invalid token")
        user = state.user(user_id)
        assert user is not None
        if body.get("credentialID") != f"{user.certificate.serial_number:x}":
            return error(400, "credentialID not found for this user")
        if not _usable(state, user):
            return {"status": 13004, "message": "certificate expired or revoked"}
        if body.get("hashAlgo") != SHA256_OID:
            return error(400, "only SHA-256 (2.16.840.1.101.3.4.2.1)")
        hashes, documents = body.get("hash"), body.get("documents")
        if not isinstance(hashes, list) or not isinstance(documents, list) or len(hashes) != len(documents) \
                or not hashes or body.get("numSignatures") != len(hashes):
            return error(400, "hash, documents and numSignatures disagree")
        digests = []
        for raw, doc in zip(hashes, documents):
            digest = _digest(str(raw))
            try:
                name = base64.b64decode(str(doc.get("document_name", "")), validate=True).decode()
            except (ValueError, binascii.Error, UnicodeDecodeError):
                name = ""
            if digest is None or not name or len(name) >= 100:
                return error(400, "each hash is base64 SHA-256; each document_name base64 UTF-8 under 100 characters")
            digests.append((str(doc.get("document_id", "")), digest))
        tx = state.start(user.user_id, digests)
        if body.get("async", 0) == 0:
            deadline = time.monotonic() + min(120.0, state.ttl_seconds + 1)
            while (current := state.get(tx.id)) is not None and current.outcome is None and not state.expired(current) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            return result(state.get(tx.id) or tx)
        return {"status": 4000, "transactionId": tx.id}

    @router.post("/requests/status")
    def request_status(body: dict[str, Any] = Body(...)) -> Any:
        tx = state.get(str(body.get("transactionId", "")))
        if tx is None:
            return error(400, "unknown transactionId")
        return result(tx)

    return router


# -- MISA eSign ---------------------------------------------------------------------------------------------


def _misa(state: EmulatorState) -> APIRouter:
    router = APIRouter()
    client = api_client(state.ca.directory)
    sessions: dict[str, tuple[str, str, float]] = {}  # token -> (user, kind, expiry)

    def fail(http: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"error": message, "errorCode": code, "devMsg": message, "userMsg": message},
                            status_code=http)

    def client_ok(request: Request) -> bool:
        return _same(request.headers.get("x-clientId"), client.client_id) and \
            _same(request.headers.get("x-clientKey"), client.client_secret)

    def tokens_for(user_id: str) -> dict[str, Any]:
        access, remote = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        expiry = time.monotonic() + 3600
        sessions[access] = (user_id, "access", expiry)
        sessions[remote] = (user_id, "remote", expiry)
        return {"data": {"accessToken": access, "remoteSigningAccessToken": remote, "tokenType": "Bearer",
                         "expiresIn": 3600, "refreshToken": secrets.token_urlsafe(16), "user": {"id": user_id}}}

    def remote_user(request: Request) -> str | JSONResponse:
        if not client_ok(request):
            return fail(401, "e2000", "invalid client")
        header = request.headers.get("AuthorizationRM", "")
        entry = sessions.get(header.removeprefix("Bearer "))
        if entry is None or entry[2] < time.monotonic() or entry[1] != "remote":
            return fail(401, "e2001", "AuthorizationRM needs the remoteSigningAccessToken")
        return entry[0]

    @router.post("/webdev/api/auth/login")
    def login(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not client_ok(request):
            return fail(401, "e2000", "invalid client")
        user = state.user(str(body.get("userName", "")))
        if user is None or not _same(body.get("password"), user.password):
            return fail(400, "e1001", "wrong user name or password")
        return fail(400, "122", "two-factor authentication required")

    @router.post("/webdev/api/auth/two-factor-auth")
    def two_factor(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not client_ok(request):
            return fail(401, "e2000", "invalid client")
        user = state.user(str(body.get("userName", "")))
        if user is None or not _same(str(body.get("code", "")), misa_otp(user)):
            return fail(400, "e1002", "wrong code")
        return tokens_for(user.user_id)

    @router.get("/external/esrm/Certificates/by-userId")
    def by_user(request: Request) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        user = state.user(who)
        assert user is not None
        cert = user.certificate
        return [{"userId": who, "keyAlias": f"{cert.serial_number:x}",
                 "keyStatus": "ACTIVE" if _usable(state, user) else "INACTIVE",
                 "certificate": _b64(_der(cert)), "certiticateChain": [_b64(_der(c)) for c in (cert, *user.chain)],
                 "effectiveDate": cert.not_valid_before_utc.isoformat(),
                 "expirationDate": cert.not_valid_after_utc.isoformat()}]

    @router.post("/external/esrm/Signing/hash")
    def sign_hash(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        user = state.user(who)
        assert user is not None
        if body.get("UserId") != who or body.get("CertAlias") != f"{user.certificate.serial_number:x}":
            return fail(400, "e3001", "certificate alias not found for this user")
        if not _usable(state, user):
            return fail(400, "e3002", "certificate inactive")
        documents = body.get("Documents")
        if not isinstance(documents, list) or not documents:
            return fail(400, "e3000", "Documents is required")
        digests = []
        for doc in documents:
            digest = _digest(str(doc.get("FileToSign", "")))
            if digest is None or len(str(doc.get("DocumentId", ""))) > 36 or len(str(doc.get("DocumentName", ""))) > 100:
                return fail(400, "e3000", "DocumentId ≤ 36, DocumentName ≤ 100, FileToSign a base64 SHA-256")
            digests.append((str(doc["DocumentId"]), digest))
        return {"transactionId": state.start(who, digests).id}

    @router.get("/external/esrm/Signing/status/{transaction_id}")
    def status(transaction_id: str, request: Request) -> Any:
        who = remote_user(request)
        if isinstance(who, JSONResponse):
            return who
        tx = state.get(transaction_id)
        if tx is None or tx.user_id != who:
            return fail(404, "e3004", "transaction not found")
        # HTTP 200 even when the signing failed: the outcome is in the body.
        if tx.outcome == "approved":
            return {"status": "SUCCESS", "errorCode": None, "errorDescription": None,
                    "signatures": [{"documentId": d, "signature": _b64(s)} for (d, _), s in zip(tx.digests, tx.signatures)]}
        if tx.outcome == "refused":
            return {"status": "FAILED", "errorCode": "USER_REJECTED", "errorDescription": "the signer refused",
                    "signatures": []}
        if state.expired(tx):  # [assumed] MISA documents no expiry; modelled like the others
            return {"status": "FAILED", "errorCode": "EXPIRED", "errorDescription": "not confirmed in time",
                    "signatures": []}
        return {"status": "PENDING", "errorCode": None, "errorDescription": None, "signatures": []}

    return router


def misa_otp(user: ProviderUser) -> str:
    """The emulated second factor: a fixed code per user, derived from its password (test only)."""
    return str(int.from_bytes(user.password.encode()[:4], "big") % 1_000_000).zfill(6)


# -- Nacencomm CA2 Remote Signing [modelled, not documented] ---------------------------------------------


def _nacencomm(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/api/APISigncore")
    client = api_client(state.ca.directory)

    @router.post("/Guiyeucauky_Mobilesign")
    def send(body: dict[str, Any] = Body(...)) -> Any:
        if not _same(body.get("Mahethong"), client.client_id) or not _same(body.get("Keyhethong"), client.client_secret):
            return PlainTextResponse("ERR:AUTH", status_code=401)
        user = state.user(str(body.get("Masothue", "")))
        if user is None or body.get("Serial") != f"{user.certificate.serial_number:x}":
            return PlainTextResponse("ERR:CERT", status_code=400)
        if not _usable(state, user):
            return PlainTextResponse("ERR:CERT_REVOKED", status_code=400)
        digest = _digest(str(body.get("Cleartext", "")))
        if body.get("Type") != "HASH" or digest is None:
            return PlainTextResponse("ERR:INPUT", status_code=400)
        return PlainTextResponse(state.start(user.user_id, [("1", digest)]).id)

    @router.get("/Layketquaky")
    def result(Code: str) -> PlainTextResponse:  # noqa: N803 - the provider's parameter name
        tx = state.get(Code)
        if tx is None:
            return PlainTextResponse("ERR:CODE", status_code=400)
        if tx.cancelled:
            return PlainTextResponse("ERR:CANCELLED")
        if tx.outcome == "approved":
            return PlainTextResponse(_b64(tx.signatures[0]))
        if tx.outcome == "refused":
            return PlainTextResponse("ERR:REJECTED")
        if state.expired(tx):
            return PlainTextResponse("ERR:EXPIRED")
        return PlainTextResponse("")  # empty while the user has not confirmed

    @router.post("/Xoayeucauky_Code")
    def cancel(Code: str) -> PlainTextResponse:  # noqa: N803
        return PlainTextResponse("OK" if state.cancel(Code) else "ERR:CODE")

    @router.get("/Getcert")
    def get_cert(idcts: str) -> PlainTextResponse:
        for user_id in state.user_ids():
            user = state.user(user_id)
            if user is not None and f"{user.certificate.serial_number:x}" == idcts:
                return PlainTextResponse(_b64(_der(user.certificate)))
        return PlainTextResponse("ERR:CERT", status_code=404)

    return router
