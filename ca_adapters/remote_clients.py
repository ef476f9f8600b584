"""The four providers' remote-signing clients, one class each, over :class:`RemoteSigningClient`.

The ``parse_*`` functions read one documented reply each; they are what the sample tests replay,
so a change that drifts from the published shapes fails there first.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

import httpx

from ca_adapters.remote_signing import (
    CallbackEvent,
    CertificateOffer,
    DigestToSign,
    ProviderApiError,
    ProviderReplyMalformed,
    ProviderSessionRevoked,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
    choose_certificate,
)

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ProviderReplyMalformed("a signature or certificate is not base64") from exc


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise ProviderReplyMalformed(f"the provider answered HTTP {response.status_code} with {kind}, not JSON") from exc


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderReplyMalformed(f"{what}: expected a JSON object")
    return value


def _unknown(provider: str, status: Any) -> RemoteResult:
    # Not a documented status: the transaction is not known to be over, so it stays pending (audited).
    return RemoteResult(RemoteStatus.PENDING, detail=f"{provider}: unknown status {str(status)[:40]}",
                        anomaly="unknown_status")


# -- VNPT SmartCA, SP769 ----------------------------------------------------------------------------------

VNPT_SIGNED = "SUCCESS"
VNPT_WAITING = "sig_wait_for_user_confirm"
VNPT_MODELLED_REJECTED = "sig_rejected"
"""Modelled: VNPT documents no message for a refusal."""
VNPT_MODELLED_EXPIRED = "sig_expired"
"""Modelled: nor for a transaction that ran out of time."""
VNPT_SEAL = "ESEAL"


def parse_vnpt_certificates(reply: Any) -> list[CertificateOffer]:
    """``get_certificate``'s ``data.user_certificates``: each a personal certificate or an ``ESEAL``."""
    body = _object(reply, "VNPT get_certificate")
    if body.get("status_code") != 200:
        raise ProviderApiError(f"VNPT: {body.get('status_code')} {body.get('message')}")
    certs = (_object(body.get("data") or {}, "VNPT data")).get("user_certificates") or []
    offers = []
    for cert in certs:
        chain = cert.get("chain_data") or {}
        der = tuple(_unb64(c) for c in (cert.get("cert_data"), chain.get("ca_cert"), chain.get("root_cert")) if c)
        status = str(cert.get("cert_status_code") or "").upper()
        offers.append(CertificateOffer(str(cert.get("serial_number") or ""), der,
                                       personal=str(cert.get("service_type", "")).upper() != VNPT_SEAL,
                                       valid=status == "VALID"))
    return offers


def _vnpt_files(files: Any) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    if not isinstance(files, list) or not files:
        return (), ()
    return (tuple(_unb64(f.get("signature_value")) for f in files), tuple(str(f.get("doc_id", "")) for f in files))


def parse_vnpt_status(reply: Any) -> RemoteResult:
    """``sign/{tranId}/status``: ``message`` ``"SUCCESS"`` with ``data.signatures`` once signed."""
    body = _object(reply, "VNPT status")
    message = str(body.get("message") or "")
    if body.get("status_code") != 200:
        return RemoteResult(RemoteStatus.FAILED, detail=f"VNPT: {body.get('status_code')} {message}")
    signatures, ids = _vnpt_files((body.get("data") or {}).get("signatures"))
    if signatures:
        return RemoteResult(RemoteStatus.SUCCESS, signatures, detail=message, document_ids=ids)
    if message.upper() == VNPT_SIGNED:
        raise ProviderReplyMalformed("VNPT says SUCCESS without signatures")
    if message == VNPT_WAITING:
        return RemoteResult(RemoteStatus.PENDING, detail=message)
    known = {VNPT_MODELLED_REJECTED: RemoteStatus.REJECTED, VNPT_MODELLED_EXPIRED: RemoteStatus.EXPIRED}
    return RemoteResult(known[message], detail=message) if message in known else _unknown("VNPT", message)


def parse_vnpt_callback(body: Any) -> CallbackEvent:
    """§3.5: ``{sp_id, status_code, message, transaction_id, signed_files:[{doc_id, signature_value, ...}]}``."""
    event = _object(body, "VNPT callback")
    transaction_id = str(event.get("transaction_id") or "")
    if not transaction_id:
        raise ProviderReplyMalformed("VNPT callback without transaction_id")
    signatures, ids = _vnpt_files(event.get("signed_files"))
    message = str(event.get("message") or "")
    if event.get("status_code") == 200 and signatures:
        result = RemoteResult(RemoteStatus.SUCCESS, signatures, detail=message, document_ids=ids)
    else:
        result = parse_vnpt_status({"status_code": event.get("status_code"), "message": message, "data": {}}) \
            if message.upper() != VNPT_SIGNED else RemoteResult(RemoteStatus.FAILED, detail="VNPT: SUCCESS without files")
    return CallbackEvent(transaction_id, f"{transaction_id}:{event.get('status_code')}:{message}"[:190], result)


class VnptClient(RemoteSigningClient):
    """VNPT SmartCA SP769: SP credentials in every body, hex digests, the outcome in ``status_code``."""

    POLL_SECONDS = 10.0  # integrators poll every 10 s for about 4 minutes
    POLL_WINDOW_SECONDS = 240.0

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = _object(_json(self.http.post(path, json={"sp_id": self.client_id, "sp_password": self.client_secret,
                                                          **body})), "VNPT")
        if reply.get("status_code") != 200:  # HTTP is 200 either way
            raise ProviderApiError(f"VNPT: {reply.get('status_code')} {reply.get('message')}")
        return reply

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        body: dict[str, Any] = {"user_id": user_id, "transaction_id": uuid.uuid4().hex}
        if serial_hex:
            body["serial_number"] = serial_hex
        offers = parse_vnpt_certificates(self._call("/v1/credentials/get_certificate", body))
        return choose_certificate(user_id, offers, serial_hex)

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        reply = self._call("/v1/signatures/sign", {
            "user_id": credential.user_id, "transaction_id": uuid.uuid4().hex, "transaction_desc": description,
            "serial_number": credential.credential_ref,
            "sign_files": [{"data_to_be_signed": d.digest.hex(), "doc_id": d.document_id, "file_type": "pdf",
                            "sign_type": "hash"} for d in digests]})
        transaction_id = (reply.get("data") or {}).get("transaction_id")
        if not transaction_id:
            raise ProviderReplyMalformed("VNPT sign reply without data.transaction_id")
        return str(transaction_id)

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        return parse_vnpt_status(_json(self.http.post(f"/v1/signatures/sign/{transaction_id}/status", content=b"")))

    def parse_callback(self, body: Any) -> CallbackEvent:
        event = _object(body, "VNPT callback")
        if str(event.get("sp_id")) != self.client_id:
            raise ProviderApiError("VNPT callback for another sp_id")
        return parse_vnpt_callback(event)

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        # Modelled: §3.5 shows the provider's body, not the answer it expects.
        return {"status_code": 200 if accepted else 400, "message": message}


# -- Viettel-CA MySign ----------------------------------------------------------------------------------------

VIETTEL_STATUSES = {"1": RemoteStatus.SUCCESS, "0": RemoteStatus.PENDING, "4000": RemoteStatus.PENDING,
                    "6000": RemoteStatus.PENDING, "4001": RemoteStatus.EXPIRED, "4002": RemoteStatus.REJECTED,
                    "4004": RemoteStatus.FAILED, "4005": RemoteStatus.FAILED, "13004": RemoteStatus.FAILED,
                    "50000": RemoteStatus.FAILED}
"""``"1"`` and ``"0"`` are published; the numeric codes come from one integrator's table (strings or numbers)."""
VIETTEL_TOKEN_REJECTED = "59033"
"""Viettel's code for an unusable bearer token (HTTP 401): log in again for that user."""


def parse_viettel_status(reply: Any) -> RemoteResult:
    """``requests/status`` (and ``signHash`` with ``async: 0``): ``status`` a string, ``"1"`` signed."""
    body = _object(reply, "Viettel status")
    raw = body.get("status")
    code = str(raw).strip() if raw is not None else ""
    status = VIETTEL_STATUSES.get(code)
    if status is None:
        return _unknown("Viettel", raw)
    if status is RemoteStatus.SUCCESS:
        signatures = body.get("signatures")
        if not isinstance(signatures, list) or not signatures:
            raise ProviderReplyMalformed("Viettel says signed without signatures")
        return RemoteResult(status, tuple(_unb64(s) for s in signatures), detail=code)
    return RemoteResult(status, detail=f"Viettel: {code} {body.get('message') or body.get('description') or ''}".strip())


def parse_viettel_certificates(reply: Any) -> list[CertificateOffer]:
    """``certificates/info``: a list of ``{credential_id, key, cert{status, certificates[...]}, multisign, ...}``."""
    if not isinstance(reply, list):
        raise ProviderReplyMalformed("Viettel certificates/info: expected a list")
    return [CertificateOffer(str(item.get("credential_id") or ""),
                             tuple(_unb64(c) for c in (item.get("cert") or {}).get("certificates") or ()),
                             personal=True, valid=str((item.get("cert") or {}).get("status", "")).lower() == "valid")
            for item in reply]


def parse_viettel_callback(body: Any) -> CallbackEvent:
    """``async: 3``: ``{meta_data:{request_id, transaction_id, status}, data:{results:[{document_id, signature}]}}``."""
    event = _object(body, "Viettel callback")
    meta = _object(event.get("meta_data"), "Viettel callback meta_data")
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
    POLL_WINDOW_SECONDS = 120.0
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
        reply = _object(_json(response), "Viettel login")
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
        reply = _json(response)
        if response.status_code == 401 or (isinstance(reply, dict) and str(reply.get("code")) == VIETTEL_TOKEN_REJECTED):
            response = self.http.post(path, json=body,
                                      headers={"Authorization": f"Bearer {self._token(user_id, renew=True)}"})
            reply = _json(response)
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
            "description": _b64(description[:99].encode()),
            "documents": [{"document_id": d.document_id, "document_name": _b64(d.name[:99].encode())} for d in digests],
            "hash": [_b64(d.digest) for d in digests], "hashAlgo": SHA256_OID, "signAlgo": RSA_OID, "async": mode})
        reply = _object(reply, "Viettel signHash")
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


# -- MISA eSign --------------------------------------------------------------------------------------------------

MISA_AUTH = "api/auth/api/v1/auth"
MISA_CERTIFICATES = "external/esrm/service/general/api/v1/Certificates/by-userId"
MISA_SIGN = "external/esrm/service/signing/api/v1/Signing/hash"
MISA_STATUS = "external/esrm/service/signing/api/v1/Signing/status"
MISA_SECOND_FACTOR = 122
MISA_OTP_SMS_OR_EMAIL, MISA_OTP_APP = 0, 1
MISA_STATUSES = {"PENDING": RemoteStatus.PENDING, "SUCCESS": RemoteStatus.SUCCESS, "FAILED": RemoteStatus.FAILED,
                 "CANCELLED": RemoteStatus.REJECTED}
MISA_MODELLED_REJECTED = 4002
"""Modelled: MISA publishes no errorCode for a signer's refusal."""
MISA_MODELLED_EXPIRED = 4001
"""Modelled: nor any expiry."""


def misa_status(reply: Any) -> tuple[dict[str, Any], Any]:
    """Split ``{status:{type, code, error, errorCode, devMsg, userMsg}, data}``; a bare reply has no wrapper."""
    body = reply if isinstance(reply, dict) else {"data": reply}
    status = body.get("status")
    if isinstance(status, dict):
        return status, body.get("data")
    # An older reading: the error fields at the top level, the data bare.
    return {k: body.get(k) for k in ("error", "errorCode", "devMsg", "userMsg")}, body.get("data", body)


def misa_code(status: dict[str, Any]) -> str:
    for key in ("errorCode", "code"):
        if status.get(key) not in (None, "", 0, "0"):
            return str(status[key])
    return ""


def parse_misa_signing_status(reply: Any) -> RemoteResult:
    """``Signing/status/{id}``: ``PENDING``, ``SUCCESS``, ``FAILED`` (``CANCELLED`` seen), HTTP 200 even on failure."""
    _, data = misa_status(reply)
    body = _object(data, "MISA status")
    raw = str(body.get("status") or "").upper()
    status = MISA_STATUSES.get(raw)
    if status is None:
        return _unknown("MISA", body.get("status"))
    if status is RemoteStatus.SUCCESS:
        items = body.get("signatures") or []
        if not items:
            raise ProviderReplyMalformed("MISA says SUCCESS without signatures")
        return RemoteResult(status, tuple(_unb64(s.get("signature")) for s in items), detail=raw,
                            document_ids=tuple(str(s.get("documentId", "")) for s in items))
    if status is RemoteStatus.FAILED:
        code = str(body.get("errorCode") or "")
        status = {str(MISA_MODELLED_REJECTED): RemoteStatus.REJECTED,
                  str(MISA_MODELLED_EXPIRED): RemoteStatus.EXPIRED}.get(code, RemoteStatus.FAILED)
        return RemoteResult(status, detail=f"MISA: {code} {body.get('errorDescription') or ''}".strip())
    return RemoteResult(status, detail=raw)


def parse_misa_certificates(reply: Any) -> list[CertificateOffer]:
    """``Certificates/by-userId``: ``keyAlias`` (a GUID), ``certStatus``/``keyStatus``, ``certiticateChain`` (sic)."""
    _, data = misa_status(reply)
    if not isinstance(data, list):
        raise ProviderReplyMalformed("MISA certificates: expected a list")
    offers = []
    for item in data:
        chain = item.get("certiticateChain") or item.get("certificateChain") or [item.get("certificate")]
        status = str(item.get("certStatus") or item.get("keyStatus") or "").upper()
        offers.append(CertificateOffer(str(item.get("keyAlias") or ""), tuple(_unb64(c) for c in chain if c),
                                       personal=True, valid=status in ("ACTIVE", "VALID"),
                                       auto_sign=bool(item.get("isAutoSign"))))
    return offers


def parse_misa_webhook(body: Any) -> CallbackEvent:
    """``{messageId, clientId, extraData, status, errorCode, transactionId, signatures[]}``."""
    event = _object(body, "MISA webhook")
    transaction_id, message_id = str(event.get("transactionId") or ""), str(event.get("messageId") or "")
    if not transaction_id or not message_id:
        raise ProviderReplyMalformed("MISA webhook without transactionId or messageId")
    return CallbackEvent(transaction_id, message_id[:190], parse_misa_signing_status(event))


class MisaClient(RemoteSigningClient):
    """MISA eSign: client headers, login then a second factor (code 122), ``AuthorizationRM`` for signing.

    The tokens live 60 minutes; on HTTP 401 the client refreshes them with the refresh token, so a
    linked account keeps signing without the signer's password until MISA revokes the session.
    """

    POLL_SECONDS = 5.0  # modelled: MISA publishes no cadence
    POLL_WINDOW_SECONDS = 300.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions: dict[str, dict[str, Any]] = {}

    def _headers(self) -> dict[str, str]:
        return {"x-clientId": self.client_id, "x-clientKey": self.client_secret}

    def _keep(self, user_name: str, data: Any) -> None:
        body = _object(data, "MISA tokens")
        if not body.get("remoteSigningAccessToken"):
            raise ProviderReplyMalformed("MISA tokens without remoteSigningAccessToken")
        self._sessions[user_name] = {"remote": str(body["remoteSigningAccessToken"]),
                                     "refresh": str(body.get("refreshToken") or ""),
                                     "user_id": str((body.get("user") or {}).get("id") or user_name)}

    def login(self, user_name: str, password: str, otp: str, *, otp_type: int = MISA_OTP_SMS_OR_EMAIL,
              remember: bool = False) -> None:
        """Password, then the second factor the login demands (code 122 inside ``status``)."""
        status, data = misa_status(_json(self.http.post(f"{MISA_AUTH}/login-api", headers=self._headers(),
                                                        json={"userName": user_name, "password": password})))
        if misa_code(status) == str(MISA_SECOND_FACTOR):
            # The two-factor call's headers carry no "x-" (the published page).
            status, data = misa_status(_json(self.http.post(
                f"{MISA_AUTH}/two-factor-auth", headers={"clientId": self.client_id, "clientKey": self.client_secret},
                json={"userName": user_name, "code": otp, "otpType": otp_type, "remember": remember})))
        if misa_code(status) or not data:
            raise ProviderApiError(f"MISA login failed: {misa_code(status)} {status.get('devMsg') or ''}".strip())
        self._keep(user_name, data)

    def resend_otp(self, user_name: str, otp_type: int = MISA_OTP_SMS_OR_EMAIL) -> None:
        status, _ = misa_status(_json(self.http.post(f"{MISA_AUTH}/resend-otp-auth", headers=self._headers(),
                                                     json={"userName": user_name, "otpType": otp_type})))
        if misa_code(status):
            raise ProviderApiError(f"MISA: {misa_code(status)} {status.get('devMsg') or ''}".strip())

    def _refresh(self, user_name: str) -> None:
        session = self._sessions.get(user_name) or {}
        # The refresh body is modelled: the page names the call, not its fields.
        response = self.http.post(f"{MISA_AUTH}/refreshtoken", headers=self._headers(),
                                  json={"refreshToken": session.get("refresh", "")})
        status, data = misa_status(_json(response))
        if response.status_code != 200 or misa_code(status) or not data:
            self._sessions.pop(user_name, None)
            raise ProviderSessionRevoked(f"MISA refused to renew the session of {user_name}: "
                                         f"{misa_code(status) or response.status_code}; link the signer again")
        self._keep(user_name, data)

    def session_state(self, user_id: str) -> dict[str, Any] | None:
        return dict(self._sessions[user_id]) if user_id in self._sessions else None

    def resume(self, user_id: str, session: Any) -> None:
        if isinstance(session, str):  # stored by an earlier kyso: the signing token alone
            session = {"remote": session, "refresh": ""}
        if isinstance(session, dict) and session.get("remote"):
            self._sessions[user_id] = dict(session)

    def _call(self, method: str, path: str, user_id: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if user_id not in self._sessions:
            raise ProviderSessionRevoked(f"MISA: no signing session for {user_id}; log in first")
        for attempt in (1, 2):
            headers = {**self._headers(), "AuthorizationRM": f"Bearer {self._sessions[user_id]['remote']}"}
            response = self.http.request(method, path, headers=headers, json=body)
            if response.status_code != 401 or attempt == 2:
                return response.status_code, _json(response)
            self._refresh(user_id)  # 60-minute token: renew and ask once more
        raise AssertionError("unreachable")

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        code, reply = self._call("GET", MISA_CERTIFICATES, user_id)
        status, _ = misa_status(reply)
        if code != 200 or misa_code(status):
            raise ProviderApiError(f"MISA: {misa_code(status) or code} {status.get('devMsg') or ''}".strip())
        return choose_certificate(user_id, parse_misa_certificates(reply), serial_hex)

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        # UserId is MISA's user.id from the tokens reply, which need not be the userName one logs in with.
        account_id = (self._sessions.get(credential.user_id) or {}).get("user_id") or credential.user_id
        code, reply = self._call("POST", MISA_SIGN, credential.user_id, {
            "DataToBeDisplayed": description, "UserId": account_id, "CertAlias": credential.credential_ref,
            "Documents": [{"DocumentId": d.document_id[:36], "FileToSign": _b64(d.digest), "DocumentName": d.name[:100]}
                          for d in digests]})
        status, data = misa_status(reply)
        if code != 200 or misa_code(status):
            raise ProviderApiError(f"MISA refused: {misa_code(status) or code} {status.get('devMsg') or ''}".strip())
        transaction_id = _object(data, "MISA sign").get("transactionId")
        if not transaction_id:
            raise ProviderReplyMalformed("MISA sign reply without transactionId")
        return str(transaction_id)

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        code, reply = self._call("GET", f"{MISA_STATUS}/{transaction_id}", credential.user_id)
        status, _ = misa_status(reply)
        if code != 200:
            raise ProviderApiError(f"MISA: {misa_code(status) or code} {status.get('devMsg') or ''}".strip())
        return parse_misa_signing_status(reply)

    def parse_callback(self, body: Any) -> CallbackEvent:
        event = _object(body, "MISA webhook")
        if str(event.get("clientId")) != self.client_id:
            raise ProviderApiError("MISA webhook for another clientId")
        return parse_misa_webhook(event)

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        return {"errorCode": 0 if accepted else 1, "devMsg": message, "userMsg": message}


# -- Nacencomm CA2 (integrators' code only) --------------------------------------------------------------------

NACENCOMM_BASE = "/api/APISigncore"
NACENCOMM_MODELLED_HASH_TYPE = "HASH"
"""Modelled: the public code sends whole documents (``XML_HD``, ``XML``, ``PDF``, ``Text``), never a hash."""
NACENCOMM_WAITING, NACENCOMM_SIGNED = 0, 1
NACENCOMM_REFUSED = (2, -1, -2)
NACENCOMM_MODELLED_EXPIRED = 3
"""Modelled: no expiry state is public."""


def nacencomm_text(body: str) -> str:
    """A reply is a JSON-quoted string; some integrators show it quoted twice: unquote until plain."""
    text = body.strip()
    for _ in range(2):
        if text.startswith('"'):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ProviderReplyMalformed("Nacencomm reply is not a JSON-quoted string") from exc
            if not isinstance(value, str):
                raise ProviderReplyMalformed("Nacencomm reply is not a string")
            text = value
    return text


def parse_nacencomm_result(body: str) -> RemoteResult:
    """``Layketquaky``: an empty quoted string while pending (never success), else the result with ``Trangthaiky``."""
    text = nacencomm_text(body)
    if text == "":
        return RemoteResult(RemoteStatus.PENDING)
    if text.startswith("ERR"):
        return RemoteResult(RemoteStatus.FAILED, detail=f"Nacencomm: {text[:100]}")
    if text.startswith("<"):
        raise ProviderReplyMalformed("Nacencomm answered markup, not a quoted string")
    try:
        result = json.loads(text) if text.startswith("{") else None
    except ValueError as exc:
        raise ProviderReplyMalformed("Nacencomm result is not JSON") from exc
    if result is None:  # an older reading: the bare base64 signature
        return RemoteResult(RemoteStatus.SUCCESS, (_unb64(text),))
    state = result.get("Trangthaiky")
    try:
        state = int(state)
    except (TypeError, ValueError):
        return _unknown("Nacencomm", state)
    message = str(result.get("Thongbao") or "")
    if state == NACENCOMM_SIGNED:
        if not result.get("Chuky"):
            raise ProviderReplyMalformed("Nacencomm signed without a signature")
        return RemoteResult(RemoteStatus.SUCCESS, (_unb64(result["Chuky"]),), detail=message)
    if state == NACENCOMM_WAITING:
        return RemoteResult(RemoteStatus.PENDING, detail=message)
    if state in NACENCOMM_REFUSED:
        return RemoteResult(RemoteStatus.REJECTED, detail=f"Nacencomm: {state} {message}".strip())
    if state == NACENCOMM_MODELLED_EXPIRED:
        return RemoteResult(RemoteStatus.EXPIRED, detail=f"Nacencomm: {state} {message}".strip())
    return _unknown("Nacencomm", state)


def nacencomm_display(request_id: str, reference: str, email: str, title: str) -> str:
    """``Keyhethong``: not a secret but ``"{id}|{ref}|{email}|{title}"``; the phone app shows the title."""
    return "|".join(part.replace("|", "/") for part in (request_id, reference, email, title))


class NacencommClient(RemoteSigningClient):
    """Nacencomm CA2: POSTs, JSON-quoted string replies, an empty one until done, then an acknowledgement.

    No secret appears in any public request: authentication is modelled as the network (an
    allowlisted address) and the system code ``Mahethong``.
    """

    max_digests = 1
    POLL_SECONDS = 5.0  # modelled: no cadence is public

    def _post(self, call: str, params: dict[str, Any], body: dict[str, Any] | None = None) -> str:
        response = self.http.post(f"{NACENCOMM_BASE}/{call}", params=params, json=body)
        if response.headers.get("content-type", "").startswith("text/html"):
            raise ProviderReplyMalformed(f"Nacencomm {call} answered HTML")
        text = nacencomm_text(response.text)
        if response.status_code != 200 or text.startswith("ERR"):
            raise ProviderApiError(f"Nacencomm {call}: {text[:100] or response.status_code}")
        return text

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        """``serial_hex`` here is Nacencomm's own certificate id, ``idcts`` (an integer)."""
        if not serial_hex.isdigit():
            raise ProviderApiError("Nacencomm names certificates by an integer id (idcts)")
        der = _unb64(self._post("Getcert", {"idcts": int(serial_hex)}))
        from cryptography import x509

        ca = self.http.get("/ca.cer")  # modelled: the chain is the provider's published CA certificate
        serial = f"{x509.load_der_x509_certificate(der).serial_number:x}"
        return RemoteCredential(user_id, serial, (der, ca.content))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        if len(digests) != 1:
            raise ProviderApiError("Nacencomm signs one digest per request")
        [digest] = digests
        code = self._post("Guiyeucauky_Mobilesign", {}, {
            "Serial": credential.credential_ref, "Masothue": credential.user_id, "Cleartext": _b64(digest.digest),
            "Mahethong": self.client_id,
            "Keyhethong": nacencomm_display(digest.document_id, description[:24], "", digest.name or description),
            "Linkfile_goc": "", "Email": "", "Type": NACENCOMM_MODELLED_HASH_TYPE})
        if not code:
            raise ProviderReplyMalformed("Nacencomm answered an empty request code")
        return code

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        response = self.http.post(f"{NACENCOMM_BASE}/Layketquaky", params={"Code": transaction_id})
        if response.status_code != 200:
            raise ProviderApiError(f"Nacencomm Layketquaky: HTTP {response.status_code}")
        if response.headers.get("content-type", "").startswith("text/html"):
            raise ProviderReplyMalformed("Nacencomm Layketquaky answered HTML")
        result = parse_nacencomm_result(response.text)
        if result.status is not RemoteStatus.PENDING and not result.anomaly:
            self.acknowledge(transaction_id)
        return result

    def acknowledge(self, transaction_id: str) -> None:
        """``Capnhattrangthaihoantat_Code``: tell Nacencomm the result was fetched."""
        try:
            self._post("Capnhattrangthaihoantat_Code", {"Code": transaction_id})
        except ProviderApiError:
            pass  # the result is ours already; the provider keeps its record a little longer

    def cancel(self, transaction_id: str) -> bool:
        try:
            return self._post("Xoayeucauky_Code", {"Code": transaction_id, "phanloaiky": 1}) != ""
        except ProviderApiError:
            return False


CLIENTS: dict[str, type[RemoteSigningClient]] = {
    "vnpt": VnptClient, "viettel": ViettelClient, "misa": MisaClient, "nacencomm": NacencommClient,
}
