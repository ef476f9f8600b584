"""Viettel-CA MySign, emulated: per-user bearer tokens, ``async`` 0/1/3, the callback's token handshake."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any

import httpx
from fastapi import APIRouter, Body, Header
from fastapi.responses import JSONResponse

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.provider_apis.common import b64, decode_digest, der, is_usable, matches
from ca_adapters.emulator.state import CallbackTarget, EmulatorState, ProviderUser, Transaction

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"
VIETTEL_BAD_CLIENT, VIETTEL_BAD_USER, VIETTEL_BAD_TOKEN, VIETTEL_BAD_SECRET = 58007, 58008, 59033, 86024
VIETTEL_MODELLED_BAD_INPUT = 40000
"""Modelled: no code for malformed input is public."""


def _viettel_credential_id(user: ProviderUser) -> str:
    """Like ``0123456789_2482540_20221017114147``: the user, a number, the issue time."""
    cert = user.certificate
    return f"{user.user_id}_{cert.serial_number % 10_000_000}_{cert.not_valid_before_utc:%Y%m%d%H%M%S}"


def _viettel_result(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    if tx.outcome == "approved":
        return {"status": "1", "transactionId": tx.id, "signatures": [b64(s) for s in tx.signatures]}
    if tx.outcome == "refused" or tx.cancelled:
        return {"status": 4002, "transactionId": tx.id, "signatures": None}  # numeric: one integrator's table
    if state.expired(tx):
        return {"status": 4001, "transactionId": tx.id, "signatures": None}
    return {"status": "0", "transactionId": tx.id, "signatures": None}


def signing_api(state: EmulatorState) -> APIRouter:
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
        if not matches(body.get("client_id"), client.client_id):
            return error(VIETTEL_BAD_CLIENT, "client not found")
        if not matches(body.get("client_secret"), client.client_secret):
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
            "cert": {"status": "valid" if is_usable(state, cert) else "revoked",
                     "certificates": [b64(der(c)) for c in (cert, *user.chain)],
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
        if not is_usable(state, user.certificate):
            return {"status": 13004, "message": "certificate expired or revoked"}
        if body.get("hashAlgo") != SHA256_OID:
            return error(VIETTEL_MODELLED_BAD_INPUT, "only SHA-256 (2.16.840.1.101.3.4.2.1)")
        hashes, documents = body.get("hash"), body.get("documents")
        if not isinstance(hashes, list) or not isinstance(documents, list) or len(hashes) != len(documents) \
                or not hashes or body.get("numSignatures") != len(hashes):
            return error(VIETTEL_MODELLED_BAD_INPUT, "hash, documents and numSignatures disagree")
        digests = []
        for raw, doc in zip(hashes, documents):
            digest = decode_digest(str(raw))
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
            "data": {"results": [{"document_id": doc, "signature": b64(sig)}
                                 for (doc, _), sig in zip(tx.digests, tx.signatures)]}}


def send_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    """``async: 3``: a token from the integrator's client-credentials endpoint, then the results."""
    token = httpx.post(target.token_url or "", data={"grant_type": "client_credentials", "client_id": target.client_id,
                                                     "client_secret": target.client_secret}, timeout=10)
    if token.status_code != 200:
        return token.status_code
    answer = httpx.post(target.url, json=viettel_callback_body(state, tx), timeout=10,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    return answer.status_code if answer.status_code != 200 or answer.json().get("status_code") != "00" else 200
