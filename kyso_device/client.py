"""A typed HTTP client of the approval-device API, and the device's state file."""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from biometrics import BindingInput, BoundDocument, Decision, compute_binding, sign_decision, verification_code
from biometrics.text import describe, unsafe_character


class DeviceApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


class RequestRefused(Exception):
    """The device will not decide on this request: what it would show is not what the binding covers,
    or cannot be shown faithfully. Nothing is signed or sent."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


# Option name: whether its text may hold newlines (see biometrics.binding).
_MULTILINE_OPTIONS = {"stamp_text": True}


def _text(value: object, what: str, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise RequestRefused("malformed_request", f"{what} is not a text")
    found = unsafe_character(value, multiline=multiline)
    if found is not None:
        raise RequestRefused("invalid_text", f"{what} holds {describe(found[1])}; it cannot be shown as it is")
    return value


def _options(value: object, what: str) -> dict[str, str | bool]:
    if not isinstance(value, dict):
        raise RequestRefused("malformed_request", f"{what} options are not an object")
    options: dict[str, str | bool] = {}
    for name, option in value.items():
        options[_text(name, f"{what} option name")] = option if isinstance(option, bool) else \
            _text(option, f"{what} {name}", _MULTILINE_OPTIONS.get(name, False))
    return options


def checked_binding(request: Mapping[str, Any]) -> bytes:
    """Recompute the binding from every field this device shows, and refuse unless it is the one the
    server sent (and its verification code the one shown). Raises :class:`RequestRefused`."""
    try:
        docs = sorted(request["documents"], key=lambda d: int(d["position"]))
        if [int(d["position"]) for d in docs] != list(range(len(docs))) or not docs:
            raise RequestRefused("malformed_request", "the documents' positions are not 0, 1, 2...")
        bound = [BoundDocument(bytes.fromhex(d["hash"]), _text(d["title"], f"document {n} title"),
                               _text(d["summary"], f"document {n} summary", multiline=True),
                               _options(d.get("options") or {}, f"document {n}")) for n, d in enumerate(docs)]
        expires_at = datetime.fromisoformat(request["expires_at"])
        recomputed = compute_binding(BindingInput(
            _text(request["request_id"], "request id"), _text(request["credential_id"], "credential id"),
            _text(request["relying_system"], "relying system"), _text(request["hash_algorithm"], "hash algorithm"),
            bound, expires_at, _text(request["nonce"], "nonce")))
        sent = base64.b64decode(request["binding"], validate=True)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RequestRefused("malformed_request", f"the request lacks a field or has a bad one ({type(exc).__name__})") \
            from exc
    if not hmac.compare_digest(recomputed, sent):
        raise RequestRefused("binding_mismatch", "the binding does not cover what this device shows; nothing signed")
    if request.get("verification_code") != verification_code(recomputed):
        raise RequestRefused("binding_mismatch", "the verification code is not the binding's; nothing signed")
    return recomputed


@dataclass
class DeviceState:
    base_url: str
    device_id: str
    device_token: str
    private_key_pem: str
    counter: int
    username: str

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.__dict__, fh, indent=1)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> DeviceState:
        return cls(**json.loads(path.read_text()))


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = {}
        raise DeviceApiError(response.status_code, body.get("code", "http_error"), body.get("detail", response.text))
    return response.json()


def enroll(base_url: str, activation_code: str, name: str = "kyso-device") -> DeviceState:
    """Make a P-256 key (a phone keeps it in secure hardware) and register it with the code."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    body = {"activation_code": activation_code, "public_key": base64.b64encode(public).decode(), "name": name}
    data = _check(httpx.post(f"{base_url.rstrip('/')}/v1/devices/enroll", json=body, timeout=30))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return DeviceState(base_url.rstrip("/"), data["device_id"], data["device_token"], pem, 0, data["username"])


class DeviceClient:
    def __init__(self, state: DeviceState, http: httpx.Client | None = None) -> None:
        self.state = state
        self._http = http or httpx.Client(base_url=state.base_url, timeout=90)
        self._headers = {"Authorization": f"Bearer {state.device_token}"}
        self._list_tag: str | None = None

    def pending(self, wait: float = 0, *, changed_only: bool = False) -> list[dict[str, Any]]:
        """The user's pending requests. ``changed_only``: wait for the list to differ from the one this
        client last got (its ETag), and return [] if it did not change within ``wait``."""
        headers = {**self._headers, "If-None-Match": self._list_tag} if changed_only and self._list_tag else self._headers
        response = self._http.get("/v1/devices/me/requests", params={"wait": wait}, headers=headers)
        if response.status_code == 304:
            return []
        data = _check(response)
        self._list_tag = response.headers.get("ETag")
        return list(data["requests"])

    def decide(self, request: dict[str, Any], decision: Decision) -> dict[str, Any]:
        """Sign the decision over the binding recomputed from what is shown, with the next counter value.
        A request whose binding is not that one is refused (:class:`RequestRefused`) before anything is signed."""
        binding = checked_binding(request)
        self.state.counter += 1
        signature = sign_decision(self.state.private_key(), binding, decision, self.state.counter)
        body = {"decision": decision.value, "counter": self.state.counter,
                "signature": base64.b64encode(signature).decode()}
        return dict(_check(self._http.post(f"/v1/devices/me/requests/{request['request_id']}/decision", json=body,
                                           headers=self._headers)))
