"""MISA eSign, emulated: the ``status`` wrapper, a login with a second factor, refreshable tokens, the webhook."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import httpx
from cryptography import x509
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.provider_apis.common import b64, decode_digest, der, is_usable, matches
from ca_adapters.emulator.state import CallbackTarget, EmulatorState, ProviderUser, Transaction

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
        body.update(status="SUCCESS", signatures=[{"documentId": d, "signature": b64(s)}
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


def signing_api(state: EmulatorState) -> APIRouter:
    outer = APIRouter()
    router = APIRouter()
    client = api_client(state.ca.directory)
    sessions: dict[str, tuple[str, str, float]] = {}  # token -> (user, kind, expiry)

    def client_ok(request: Request) -> bool:
        # The published page spells them with "x-" and, for the second factor, without: accept both.
        cid = request.headers.get("x-clientId") or request.headers.get("clientId")
        key = request.headers.get("x-clientKey") or request.headers.get("clientKey")
        return matches(cid, client.client_id) and matches(key, client.client_secret)

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
        if user is None or not matches(body.get("password"), user.password):
            return _misa_fail(400, MISA_MODELLED_CODES["login"], "wrong user name or password")
        return _misa_fail(200, MISA_SECOND_FACTOR, "two-factor authentication required")

    @router.post("/api/auth/api/v1/auth/two-factor-auth")
    def two_factor(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not client_ok(request):
            return _misa_fail(401, MISA_MODELLED_CODES["client"], "invalid client")
        if body.get("otpType") not in (0, 1) or isinstance(body.get("otpType"), bool):
            return _misa_fail(400, MISA_MODELLED_CODES["input"], "otpType is 0 (SMS or e-mail) or 1 (app)")
        user = state.user(str(body.get("userName", "")))
        if user is None or not matches(str(body.get("code", "")), misa_otp(user)):
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
        active = "ACTIVE" if is_usable(state, cert) else "INACTIVE"
        return {"userId": user.user_id, "keyAlias": misa_alias(cert), "keyStatus": active, "certStatus": active,
                "appName": "MISA eSign", "isAutoSign": user.user_id in state.auto_sign_users, "emailName": f"{user.user_id}@example.vn",
                "certificate": b64(der(cert)), "certiticateChain": [b64(der(c)) for c in (cert, *user.chain)],
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
        if not is_usable(state, user.certificate):
            return _misa_fail(400, MISA_MODELLED_CODES["inactive"], "certificate inactive")
        documents = body.get("Documents")
        if not isinstance(documents, list) or not documents:
            return _misa_fail(400, MISA_MODELLED_CODES["input"], "Documents is required")
        digests = []
        for doc in documents:
            digest = decode_digest(str(doc.get("FileToSign", "")))
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


def send_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    answer = httpx.post(target.url, json=misa_callback_body(state, tx), timeout=10)
    return answer.status_code if answer.status_code != 200 or answer.json().get("errorCode") not in (0, "0") else 200


def misa_otp(user: ProviderUser) -> str:
    """The emulated second factor: a fixed code per user, derived from its password (test only)."""
    return str(int.from_bytes(user.password.encode()[:4], "big") % 1_000_000).zfill(6)
