"""Viettel-CA MySign: its replies and callback read, and its client."""

from __future__ import annotations

import time
from typing import Any

import httpx

from ca_adapters.remote_clients.wire import b64, json_object, json_reply, unb64, unknown_status
from ca_adapters.remote_signing import (
    CallbackEvent,
    CertificateOffer,
    DigestToSign,
    ProviderApiError,
    ProviderReplyMalformed,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
    choose_certificate,
)

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"
VIETTEL_STATUSES = {"1": RemoteStatus.SUCCESS, "0": RemoteStatus.PENDING, "4000": RemoteStatus.PENDING,
                    "6000": RemoteStatus.PENDING, "4001": RemoteStatus.EXPIRED, "4002": RemoteStatus.REJECTED,
                    "4004": RemoteStatus.FAILED, "4005": RemoteStatus.FAILED, "13004": RemoteStatus.FAILED,
                    "50000": RemoteStatus.FAILED}
"""``"1"`` and ``"0"`` are published; the numeric codes come from one integrator's table (strings or numbers)."""
VIETTEL_TOKEN_REJECTED = "59033"
"""Viettel's code for an unusable bearer token (HTTP 401): log in again for that user."""


def parse_viettel_status(reply: Any) -> RemoteResult:
    """``requests/status`` (and ``signHash`` with ``async: 0``): ``status`` a string, ``"1"`` signed."""
    body = json_object(reply, "Viettel status")
    raw = body.get("status")
    code = str(raw).strip() if raw is not None else ""
    status = VIETTEL_STATUSES.get(code)
    if status is None:
        return unknown_status("Viettel", raw)
    if status is RemoteStatus.SUCCESS:
        signatures = body.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise ProviderReplyMalformed("Viettel says signed without signatures")
        return RemoteResult(status, tuple(unb64(s) for s in signatures), detail=code)
    return RemoteResult(status, detail=f"Viettel: {code} {body.get('message') or body.get('description') or ''}".strip())


def parse_viettel_certificates(reply: Any) -> list[CertificateOffer]:
    """``certificates/info``: a list of ``{credential_id, key, cert{status, certificates[...]}, multisign, ...}``."""
    if not isinstance(reply, list):
        raise ProviderReplyMalformed("Viettel certificates/info: expected a list")
    return [CertificateOffer(str(item.get("credential_id") or ""),
                             tuple(unb64(c) for c in (item.get("cert") or {}).get("certificates") or ()),
                             personal=True, valid=str((item.get("cert") or {}).get("status", "")).lower() == "valid")
            for item in reply]


def parse_viettel_callback(body: Any) -> CallbackEvent:
    """``async: 3``: ``{meta_data:{request_id, transaction_id, status}, data:{results:[{document_id, signature}]}}``."""
    event = json_object(body, "Viettel callback")
    meta = json_object(event.get("meta_data"), "Viettel callback meta_data")
    transaction_id = str(meta.get("transaction_id") or "")
    if not transaction_id:
        raise ProviderReplyMalformed("Viettel callback without meta_data.transaction_id")
    results = ((event.get("data") or {}).get("results")) or []
    signatures = [r.get("signature") for r in results if isinstance(r, dict)]
    result = parse_viettel_status({"status": meta.get("status"), "signatures": signatures})
    if result.status is RemoteStatus.SUCCESS:
        result = RemoteResult(result.status, result.signatures, result.detail,
                              tuple(str(r.get("document_id", "")) for r in results))
    callback_id = f"{meta.get('request_id') or transaction_id}:{meta.get('status')}"
    return CallbackEvent(transaction_id, callback_id[:190], result)


class ViettelClient(RemoteSigningClient):
    """Viettel MySign: a bearer token per user (renewed), ``credentialID``, base64 names, ``async``.

    Viettel's ``registerExtension`` (signing without a confirmation per signature) is never called:
    sole control means one confirmation in the signer's app per request.
    """

    PROFILE = "adss:ras:profile:001"
    POLL_SECONDS = 2.0  # integrators poll every 2 s for about 2 minutes
    RENEW_MARGIN_SECONDS = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokens: dict[str, tuple[str, float]] = {}

    def _token(self, user_id: str, *, renew: bool = False) -> str:
        cached = self._tokens.get(user_id)
        if cached and not renew and cached[1] - self.RENEW_MARGIN_SECONDS > time.monotonic():
            return cached[0]
        response = self.http.post("/vtss/service/ras/v1/login", json={
            "client_id": self.client_id, "client_secret": self.client_secret, "profile_id": self.PROFILE,
            "user_id": user_id})
        reply = json_object(json_reply(response), "Viettel login")
        if response.status_code != 200 or not reply.get("access_token"):
            raise ProviderApiError(f"Viettel login refused: {reply.get('code')} {reply.get('message')}")
        try:
            lifetime = float(reply.get("expires_in") or 3600)  # a string ("3600") in the published replies
        except ValueError:
            lifetime = 3600.0
        self._tokens[user_id] = (str(reply["access_token"]), time.monotonic() + lifetime)
        return self._tokens[user_id][0]

    def _post(self, path: str, user_id: str, body: dict[str, Any]) -> tuple[httpx.Response, Any]:
        """A bearer call; a token Viettel no longer honours (401 / 59033) is renewed once, per user."""
        response = self.http.post(path, json=body, headers={"Authorization": f"Bearer {self._token(user_id)}"})
        reply = json_reply(response)
        if response.status_code == 401 or (isinstance(reply, dict) and str(reply.get("code")) == VIETTEL_TOKEN_REJECTED):
            response = self.http.post(path, json=body,
                                      headers={"Authorization": f"Bearer {self._token(user_id, renew=True)}"})
            reply = json_reply(response)
        return response, reply

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        response, reply = self._post("/vtss/service/certificates/info", user_id, {
            "client_id": self.client_id, "client_secret": self.client_secret, "profile_id": self.PROFILE,
            "user_id": user_id, "certificates": "chain", "certInfo": True, "authInfo": True})
        if response.status_code != 200:
            raise ProviderApiError(f"Viettel: {reply.get('code')} {reply.get('message')}" if isinstance(reply, dict)
                                   else f"Viettel answered HTTP {response.status_code}")
        return choose_certificate(user_id, parse_viettel_certificates(reply), serial_hex)

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        # async 3: Viettel also calls back (after its client-credentials handshake with kyso).
        reply = self._sign_hash(credential, digests, description, mode=3 if self.callback_url else 1)
        if not reply.get("transactionId"):
            raise ProviderReplyMalformed("Viettel signHash reply without transactionId")
        return str(reply["transactionId"])

    def _sign_hash(self, credential: RemoteCredential, digests: list[DigestToSign], description: str,
                   mode: int) -> dict[str, Any]:
        response, reply = self._post("/vtss/service/signHash", credential.user_id, {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "credentialID": credential.credential_ref, "numSignatures": len(digests),
            "description": b64(description[:99].encode()),
            "documents": [{"document_id": d.document_id, "document_name": b64(d.name[:99].encode())} for d in digests],
            "hash": [b64(d.digest) for d in digests], "hashAlgo": SHA256_OID, "signAlgo": RSA_OID, "async": mode})
        reply = json_object(reply, "Viettel signHash")
        if response.status_code != 200 or str(reply.get("status")) == "13004":
            raise ProviderApiError(f"Viettel refused signHash: {reply.get('code') or reply.get('status')} "
                                   f"{reply.get('message') or ''}".strip())
        return reply

    def sign_blocking(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> RemoteResult:
        """``async: 0``: the call itself waits for the phone (up to about 120 s)."""
        return parse_viettel_status(self._sign_hash(credential, digests, description, mode=0))

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        response, reply = self._post("/vtss/service/requests/status", credential.user_id, {"transactionId": transaction_id})
        if response.status_code != 200:
            detail = f"{reply.get('code')} {reply.get('message')}" if isinstance(reply, dict) else response.status_code
            raise ProviderApiError(f"Viettel status refused: {detail}")
        return parse_viettel_status(reply)

    def parse_callback(self, body: Any) -> CallbackEvent:
        return parse_viettel_callback(body)

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        return {"status_code": "00" if accepted else "01", "message": message}  # "00" published; "01" modelled
