"""What every provider's client does with the wire: base64 fields, JSON replies, an unknown status."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

from ca_adapters.remote_signing import ProviderReplyMalformed, RemoteResult, RemoteStatus


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ProviderReplyMalformed("a signature or certificate is not base64") from exc


def json_reply(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content type").split(";")[0]
        raise ProviderReplyMalformed(f"the provider answered HTTP {response.status_code} with {kind}, not JSON") from exc


def json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderReplyMalformed(f"{what}: expected a JSON object")
    return value


def unknown_status(provider: str, status: Any) -> RemoteResult:
    # Not a documented status: the transaction is not known to be over, so it stays pending (audited).
    return RemoteResult(RemoteStatus.PENDING, detail=f"{provider}: unknown status {str(status)[:40]}",
                        anomaly="unknown_status")
