"""A typed HTTP client of the approval-device API, and the device's state file."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from biometrics import Decision, sign_decision


class DeviceApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


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

    def pending(self, wait: float = 0) -> list[dict[str, Any]]:
        data = _check(self._http.get("/v1/devices/me/requests", params={"wait": wait}, headers=self._headers))
        return list(data["requests"])

    def decide(self, request: dict[str, Any], decision: Decision) -> dict[str, Any]:
        """Sign the decision over the request's binding with the next counter value."""
        self.state.counter += 1
        binding = base64.b64decode(request["binding"])
        signature = sign_decision(self.state.private_key(), binding, decision, self.state.counter)
        body = {"decision": decision.value, "counter": self.state.counter,
                "signature": base64.b64encode(signature).decode()}
        return dict(_check(self._http.post(f"/v1/devices/me/requests/{request['request_id']}/decision", json=body,
                                           headers=self._headers)))
