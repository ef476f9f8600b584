"""The four providers' remote-signing clients, one class each, over :class:`RemoteSigningClient`."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx

from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderApiError,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
)

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderApiError(f"the provider answered HTTP {response.status_code} without JSON") from None


class VnptClient(RemoteSigningClient):
    """VNPT SmartCA SP769: SP credentials in every body, hex digests, the outcome in ``status_code``."""

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = _json(self.http.post(path, json={"sp_id": self.client_id, "sp_password": self.client_secret, **body}))
        if reply.get("status_code") != 200:  # HTTP is 200 either way
            raise ProviderApiError(f"VNPT: {reply.get('status_code')} {reply.get('message')}")
        return reply  # type: ignore[no-any-return]

    def credential(self, user_id: str) -> RemoteCredential:
        reply = self._call("/v1/credentials/get_certificate", {"user_id": user_id, "transaction_id": uuid.uuid4().hex})
        certs = reply["data"]["user_certificates"]
        if not certs:
            raise ProviderApiError(f"VNPT has no certificate for {user_id}")
        cert = certs[0]
        chain = (cert["cert_data"], cert["chain_data"]["ca_cert"], cert["chain_data"]["root_cert"])
        return RemoteCredential(user_id, cert["serial_number"], tuple(base64.b64decode(c) for c in chain))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        reply = self._call("/v1/signatures/sign", {
            "user_id": credential.user_id, "transaction_id": uuid.uuid4().hex, "transaction_desc": description,
            "serial_number": credential.credential_ref,
            "sign_files": [{"data_to_be_signed": d.digest.hex(), "doc_id": d.document_id, "file_type": "pdf",
                            "sign_type": "hash"} for d in digests]})
        return str(reply["data"]["transaction_id"])

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        reply = _json(self.http.post(f"/v1/signatures/sign/{transaction_id}/status", content=b""))
        if reply.get("status_code") != 200:
            return RemoteResult(RemoteStatus.FAILED, detail=str(reply.get("message")))
        signatures = (reply.get("data") or {}).get("signatures")
        if signatures:
            return RemoteResult(RemoteStatus.SUCCESS, tuple(base64.b64decode(s["signature_value"]) for s in signatures))
        status = {"sig_rejected": RemoteStatus.REJECTED, "sig_expired": RemoteStatus.EXPIRED}.get(
            str(reply.get("message")), RemoteStatus.PENDING)
        return RemoteResult(status, detail=str(reply.get("message")))


class ViettelClient(RemoteSigningClient):
    """Viettel MySign: a bearer token per user, ``credentialID``, base64 names, ``async`` and numeric statuses."""

    PROFILE = "adss:ras:profile:001"
    STATUSES = {1: RemoteStatus.SUCCESS, 4000: RemoteStatus.PENDING, 6000: RemoteStatus.PENDING,
                4001: RemoteStatus.EXPIRED, 4002: RemoteStatus.REJECTED}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokens: dict[str, str] = {}

    def _token(self, user_id: str) -> str:
        if user_id not in self._tokens:
            response = self.http.post("/vtss/service/ras/v1/login", json={
                "client_id": self.client_id, "client_secret": self.client_secret, "profile_id": self.PROFILE,
                "user_id": user_id})
            if response.status_code != 200:
                raise ProviderApiError(f"Viettel login refused: {response.text[:200]}")
            self._tokens[user_id] = _json(response)["access_token"]
        return self._tokens[user_id]

    def _auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token(user_id)}"}

    def credential(self, user_id: str) -> RemoteCredential:
        response = self.http.post("/vtss/service/certificates/info", headers=self._auth(user_id), json={
            "client_id": self.client_id, "client_secret": self.client_secret, "profile_id": self.PROFILE,
            "user_id": user_id, "certificates": "chain", "certInfo": True, "authInfo": True})
        items = _json(response)
        if response.status_code != 200 or not items:
            raise ProviderApiError(f"Viettel has no certificate for {user_id}")
        item = items[0]
        return RemoteCredential(user_id, item["credential_id"],
                                tuple(base64.b64decode(c) for c in item["cert"]["certificates"]))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        reply = self._sign_hash(credential, digests, description, mode=1)
        return str(reply["transactionId"])

    def _sign_hash(self, credential: RemoteCredential, digests: list[DigestToSign], description: str,
                   mode: int) -> dict[str, Any]:
        response = self.http.post("/vtss/service/signHash", headers=self._auth(credential.user_id), json={
            "client_id": self.client_id, "client_secret": self.client_secret,
            "credentialID": credential.credential_ref, "numSignatures": len(digests),
            "description": _b64(description[:99].encode()),
            "documents": [{"document_id": d.document_id, "document_name": _b64(d.name[:99].encode())} for d in digests],
            "hash": [_b64(d.digest) for d in digests], "hashAlgo": SHA256_OID, "signAlgo": RSA_OID, "async": mode})
        reply = _json(response)
        if response.status_code != 200 or reply.get("status") == 13004:
            raise ProviderApiError(f"Viettel refused signHash: {reply.get('message') or reply.get('status')}")
        return reply  # type: ignore[no-any-return]

    def sign_blocking(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> RemoteResult:
        """``async: 0``: the call itself waits for the phone (up to about 120 s)."""
        return self._result(self._sign_hash(credential, digests, description, mode=0))

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        return self._result(_json(self.http.post("/vtss/service/requests/status", json={"transactionId": transaction_id})))

    def _result(self, reply: dict[str, Any]) -> RemoteResult:
        status = self.STATUSES.get(reply.get("status"), RemoteStatus.FAILED)  # type: ignore[arg-type]
        signatures = tuple(base64.b64decode(s) for s in reply.get("signatures") or ())
        return RemoteResult(status, signatures if status is RemoteStatus.SUCCESS else (), detail=str(reply.get("status")))


class MisaClient(RemoteSigningClient):
    """MISA eSign: client headers, login then a second factor (code 122), ``AuthorizationRM`` for signing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._remote_tokens: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        return {"x-clientId": self.client_id, "x-clientKey": self.client_secret}

    def login(self, user_name: str, password: str, otp: str) -> None:
        """Password, then the second factor the login demands (error code 122)."""
        first = _json(self.http.post("/webdev/api/auth/login", headers=self._headers(),
                                     json={"userName": user_name, "password": password}))
        if first.get("errorCode") == "122":
            first = _json(self.http.post("/webdev/api/auth/two-factor-auth", headers=self._headers(),
                                         json={"userName": user_name, "code": otp, "otpType": "SMS"}))
        data = first.get("data")
        if not data:
            raise ProviderApiError(f"MISA login failed: {first.get('errorCode')} {first.get('devMsg')}")
        self._remote_tokens[user_name] = data["remoteSigningAccessToken"]

    def session(self, user_id: str) -> str | None:
        """The user's remote-signing token, for a broker that keeps it between calls."""
        return self._remote_tokens.get(user_id)

    def resume(self, user_id: str, token: str) -> None:
        self._remote_tokens[user_id] = token

    def _rm(self, user_id: str) -> dict[str, str]:
        if user_id not in self._remote_tokens:
            raise ProviderApiError(f"MISA: no signing session for {user_id}; log in first")
        return {**self._headers(), "AuthorizationRM": f"Bearer {self._remote_tokens[user_id]}"}

    def credential(self, user_id: str) -> RemoteCredential:
        response = self.http.get("/external/esrm/Certificates/by-userId", headers=self._rm(user_id))
        items = _json(response)
        if response.status_code != 200 or not items:
            raise ProviderApiError(f"MISA has no certificate for {user_id}")
        item = items[0]
        return RemoteCredential(user_id, item["keyAlias"], tuple(base64.b64decode(c) for c in item["certiticateChain"]))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        response = self.http.post("/external/esrm/Signing/hash", headers=self._rm(credential.user_id), json={
            "DataToBeDisplayed": description, "UserId": credential.user_id, "CertAlias": credential.credential_ref,
            "Documents": [{"DocumentId": d.document_id[:36], "FileToSign": _b64(d.digest), "DocumentName": d.name[:100]}
                          for d in digests]})
        reply = _json(response)
        if response.status_code != 200:
            raise ProviderApiError(f"MISA refused: {reply.get('errorCode')} {reply.get('devMsg')}")
        return str(reply["transactionId"])

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        reply = _json(self.http.get(f"/external/esrm/Signing/status/{transaction_id}", headers=self._rm(credential.user_id)))
        status = reply.get("status")
        if status == "SUCCESS":
            return RemoteResult(RemoteStatus.SUCCESS, tuple(base64.b64decode(s["signature"]) for s in reply["signatures"]))
        if status == "PENDING":
            return RemoteResult(RemoteStatus.PENDING)
        code = str(reply.get("errorCode"))  # FAILED at HTTP 200: the reason is in errorCode
        mapped = {"USER_REJECTED": RemoteStatus.REJECTED, "EXPIRED": RemoteStatus.EXPIRED}.get(code, RemoteStatus.FAILED)
        return RemoteResult(mapped, detail=code)


class NacencommClient(RemoteSigningClient):
    """Nacencomm CA2 [modelled, not documented]: a bare request code, then an empty result until done."""

    max_digests = 1

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:  # type: ignore[override]
        response = self.http.get("/api/APISigncore/Getcert", params={"idcts": serial_hex})
        if response.status_code != 200 or response.text.startswith("ERR"):
            raise ProviderApiError(f"Nacencomm has no certificate {serial_hex}")
        ca = self.http.get("/ca.cer")
        return RemoteCredential(user_id, serial_hex, (base64.b64decode(response.text), ca.content))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        if len(digests) != 1:
            raise ProviderApiError("Nacencomm signs one digest per request")
        response = self.http.post("/api/APISigncore/Guiyeucauky_Mobilesign", json={
            "Serial": credential.credential_ref, "Masothue": credential.user_id, "Cleartext": _b64(digests[0].digest),
            "Mahethong": self.client_id, "Keyhethong": self.client_secret, "Linkfile_goc": "", "Email": "",
            "Type": "HASH"})
        if response.status_code != 200 or response.text.startswith("ERR"):
            raise ProviderApiError(f"Nacencomm refused: {response.text[:100]}")
        return response.text

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        text = self.http.get("/api/APISigncore/Layketquaky", params={"Code": transaction_id}).text
        if text == "":
            return RemoteResult(RemoteStatus.PENDING)
        if text.startswith("ERR:"):
            return RemoteResult({"ERR:REJECTED": RemoteStatus.REJECTED, "ERR:EXPIRED": RemoteStatus.EXPIRED}.get(
                text, RemoteStatus.FAILED), detail=text)
        return RemoteResult(RemoteStatus.SUCCESS, (base64.b64decode(text),))

    def cancel(self, transaction_id: str) -> bool:
        return self.http.post("/api/APISigncore/Xoayeucauky_Code", params={"Code": transaction_id}).text == "OK"


CLIENTS: dict[str, type[RemoteSigningClient]] = {
    "vnpt": VnptClient, "viettel": ViettelClient, "misa": MisaClient, "nacencomm": NacencommClient,
}
