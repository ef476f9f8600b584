"""MISA eSign: its wrapped replies and webhook read, and its client."""

from __future__ import annotations

from typing import Any

from ca_adapters.remote_clients.wire import b64, json_object, json_reply, unb64, unknown_status
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

MISA_AUTH = "api/auth/api/v1/auth"
MISA_CERTIFICATES = "external/esrm/service/general/api/v1/Certificates/by-userId"
MISA_SIGN = "external/esrm/service/signing/api/v1/Signing/hash"
MISA_STATUS = "external/esrm/service/signing/api/v1/Signing/status"
MISA_SECOND_FACTOR = 122
MISA_OTP_SMS_OR_EMAIL = 0
"""``otpType``: 0 SMS or e-mail (1 is the app)."""
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
    body = json_object(data, "MISA status")
    raw = str(body.get("status") or "").upper()
    status = MISA_STATUSES.get(raw)
    if status is None:
        return unknown_status("MISA", body.get("status"))
    if status is RemoteStatus.SUCCESS:
        items = body.get("signatures") or []
        if not items:
            raise ProviderReplyMalformed("MISA says SUCCESS without signatures")
        return RemoteResult(status, tuple(unb64(s.get("signature")) for s in items), detail=raw,
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
        offers.append(CertificateOffer(str(item.get("keyAlias") or ""), tuple(unb64(c) for c in chain if c),
                                       personal=True, valid=status in ("ACTIVE", "VALID"),
                                       auto_sign=bool(item.get("isAutoSign"))))
    return offers


def parse_misa_webhook(body: Any) -> CallbackEvent:
    """``{messageId, clientId, extraData, status, errorCode, transactionId, signatures[]}``."""
    event = json_object(body, "MISA webhook")
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions: dict[str, dict[str, Any]] = {}

    def _headers(self) -> dict[str, str]:
        return {"x-clientId": self.client_id, "x-clientKey": self.client_secret}

    def _keep(self, user_name: str, data: Any) -> None:
        body = json_object(data, "MISA tokens")
        if not body.get("remoteSigningAccessToken"):
            raise ProviderReplyMalformed("MISA tokens without remoteSigningAccessToken")
        self._sessions[user_name] = {"remote": str(body["remoteSigningAccessToken"]),
                                     "refresh": str(body.get("refreshToken") or ""),
                                     "user_id": str((body.get("user") or {}).get("id") or user_name)}

    def login(self, user_name: str, password: str, otp: str, *, otp_type: int = MISA_OTP_SMS_OR_EMAIL,
              remember: bool = False) -> None:
        """Password, then the second factor the login demands (code 122 inside ``status``)."""
        status, data = misa_status(json_reply(self.http.post(
            f"{MISA_AUTH}/login-api", headers=self._headers(), json={"userName": user_name, "password": password})))
        if misa_code(status) == str(MISA_SECOND_FACTOR):
            # The two-factor call's headers carry no "x-" (the published page).
            status, data = misa_status(json_reply(self.http.post(
                f"{MISA_AUTH}/two-factor-auth", headers={"clientId": self.client_id, "clientKey": self.client_secret},
                json={"userName": user_name, "code": otp, "otpType": otp_type, "remember": remember})))
        if misa_code(status) or not data:
            raise ProviderApiError(f"MISA login failed: {misa_code(status)} {status.get('devMsg') or ''}".strip())
        self._keep(user_name, data)

    def _refresh(self, user_name: str) -> None:
        session = self._sessions.get(user_name) or {}
        # The refresh body is modelled: the page names the call, not its fields.
        response = self.http.post(f"{MISA_AUTH}/refreshtoken", headers=self._headers(),
                                  json={"refreshToken": session.get("refresh", "")})
        status, data = misa_status(json_reply(response))
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
                return response.status_code, json_reply(response)
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
            "Documents": [{"DocumentId": d.document_id[:36], "FileToSign": b64(d.digest), "DocumentName": d.name[:100]}
                          for d in digests]})
        status, data = misa_status(reply)
        if code != 200 or misa_code(status):
            raise ProviderApiError(f"MISA refused: {misa_code(status) or code} {status.get('devMsg') or ''}".strip())
        transaction_id = json_object(data, "MISA sign").get("transactionId")
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
        event = json_object(body, "MISA webhook")
        if str(event.get("clientId")) != self.client_id:
            raise ProviderApiError("MISA webhook for another clientId")
        return parse_misa_webhook(event)

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        return {"errorCode": 0 if accepted else 1, "devMsg": message, "userMsg": message}
