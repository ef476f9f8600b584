"""HTTP client of kyso's token endpoint and CSC API."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


class KysoError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status, self.error, self.description = status, error, description


@dataclass(frozen=True)
class CscAuthorization:
    sad: str
    expires_in: int


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        raise KysoError(response.status_code, body.get("error") or body.get("code", "http_error"),
                        body.get("error_description") or body.get("detail", response.text))
    data = response.json()
    assert isinstance(data, dict)
    return data


class KysoClient:
    """``KysoClient(base_url, client_id=..., client_secret=...)`` or ``access_token=...``."""

    def __init__(self, base_url: str, *, client_id: str | None = None, client_secret: str | None = None,
                 access_token: str | None = None, csc_version: str = "v2", timeout: float = 180) -> None:
        self.base_url = base_url.rstrip("/")
        self.csc_version = csc_version
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._credentials = (client_id, client_secret)
        self.access_token = access_token or self.fetch_token()

    def fetch_token(self) -> str:
        client_id, secret = self._credentials
        if not client_id or not secret:
            raise ValueError("give client_id and client_secret, or an access_token")
        data = _check(self._http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                                      auth=(client_id, secret)))
        return str(data["access_token"])

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    # -- native REST API ------------------------------------------------------------------------------

    def list_credentials(self, user_id: str | None = None) -> list[dict[str, Any]]:
        response = self._http.get("/v1/credentials", params={"user": user_id} if user_id else {}, headers=self._auth)
        if response.status_code >= 400:
            _check(response)
        return list(response.json())

    def upload_document(self, path: Path, media_type: str = "application/pdf") -> str:
        """Stream a file to kyso; returns its ``document_id``."""
        with path.open("rb") as fh:
            data = _check(self._http.put("/v1/documents", content=iter(lambda: fh.read(1 << 20), b""),
                                         headers={**self._auth, "Content-Type": media_type}))
        return str(data["document_id"])

    def create_request(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = dict(self._auth)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return _check(self._http.post("/v1/requests", json=body, headers=headers))

    def create_request_with_documents(self, body: dict[str, Any], documents: list[Path], *, wait: int = 0,
                                      idempotency_key: str | None = None) -> dict[str, Any]:
        """One call: upload ``documents`` (in the order of ``body["documents"]``, which carry no content)
        and create their request; with ``wait`` (seconds, at most 60) the answer comes once the request
        ended, when the signer is quick."""
        headers = dict(self._auth)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
        files = [("document", (path.name, path.read_bytes(), _media_type(path))) for path in documents]
        return _check(self._http.post("/v1/requests/with-documents", data={"request": json.dumps(body)},
                                      files=files, headers=headers))

    def sign_xml(self, credential_id: str, document: Path, *, reference_id: str, placement: str, title: str,
                 summary: str = "", level: str = "B-B", after_request_id: str | None = None) -> dict[str, Any]:
        """Ask for an XAdES signature inside ``document`` (over the element ``reference_id``, placed in
        ``placement``); with ``after_request_id``, inside that request's signed result instead."""
        entry: dict[str, Any] = {"title": title, "summary": summary, "reference_id": reference_id,
                                 "placement": placement}
        if after_request_id is None:
            entry["content"] = base64.b64encode(document.read_bytes()).decode()
        body: dict[str, Any] = {"credential_id": credential_id, "format": "xades", "level": level,
                                "documents": [entry]}
        if after_request_id is not None:
            body["after_request_id"] = after_request_id
        return self.create_request(body)

    def validate(self, document: Path, *, content: Path | None = None) -> dict[str, Any]:
        """kyso's validation report of a signed document (PDF, CMS or XML): JSON, ETSI indications."""
        files = [("document", (document.name, document.read_bytes(), _media_type(document)))]
        if content is not None:
            files.append(("content", (content.name, content.read_bytes(), "application/octet-stream")))
        return _check(self._http.post("/v1/validations", files=files, headers=self._auth))

    def wait(self, request_id: str, timeout: float = 300) -> dict[str, Any]:
        """Long-poll until the request is signed, refused, expired or failed."""
        deadline = time.monotonic() + timeout
        while True:
            data = _check(self._http.get(f"/v1/requests/{request_id}", params={"wait": 20}, headers=self._auth))
            if data["state"] not in ("pending", "approved") or time.monotonic() > deadline:
                return data

    def download(self, url: str, target: Path) -> Path:
        """Stream a signed document to ``target``."""
        path = url.removeprefix(self.base_url)
        with self._http.stream("GET", path, headers=self._auth) as response:
            if response.status_code >= 400:
                response.read()
                _check(response)
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target

    # -- CSC API --------------------------------------------------------------------------------------

    def _csc(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        return _check(self._http.post(f"/csc/{self.csc_version}/{endpoint}", json=body,
                                      headers={"Authorization": f"Bearer {self.access_token}"}))

    def credentials(self, user_id: str | None = None) -> list[str]:
        return list(self._csc("credentials/list", {"userID": user_id} if user_id else {})["credentialIDs"])

    def credential_info(self, credential_id: str) -> dict[str, Any]:
        return self._csc("credentials/info", {"credentialID": credential_id, "certificates": "chain"})

    def authorize(self, credential_id: str, hashes: list[bytes], description: str | None = None,
                  hash_algorithm_oid: str = "2.16.840.1.101.3.4.2.1") -> CscAuthorization:
        """Blocks until the signer approves on the phone (or refuses: ``access_denied``)."""
        body: dict[str, Any] = {"credentialID": credential_id, "numSignatures": len(hashes),
                                "hashes": [base64.b64encode(h).decode() for h in hashes],
                                "hashAlgorithmOID": hash_algorithm_oid}
        if description:
            body["description"] = description
        data = self._csc("credentials/authorize", body)
        return CscAuthorization(str(data["SAD"]), int(data["expiresIn"]))

    def sign_hash(self, credential_id: str, sad: str, hashes: list[bytes], sign_algo: str,
                  sign_algo_params: bytes | None = None, hash_algorithm_oid: str = "2.16.840.1.101.3.4.2.1") -> list[bytes]:
        body: dict[str, Any] = {"credentialID": credential_id, "SAD": sad, "signAlgo": sign_algo,
                                "hashes": [base64.b64encode(h).decode() for h in hashes],
                                "hashAlgorithmOID": hash_algorithm_oid}
        if sign_algo_params is not None:
            body["signAlgoParams"] = base64.b64encode(sign_algo_params).decode()
        return [base64.b64decode(s) for s in self._csc("signatures/signHash", body)["signatures"]]


def _media_type(path: Path) -> str:
    return {".pdf": "application/pdf", ".xml": "application/xml", ".p7s": "application/pkcs7-signature",
            ".p7m": "application/pkcs7-mime"}.get(path.suffix.lower(), "application/octet-stream")
