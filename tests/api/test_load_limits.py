"""Per relying system limits: new requests per minute and requests pending, 429 with Retry-After."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import pytest

from broker.runtime import Runtime
from kyso_client import KysoClient, KysoError
from tests.conftest import Enrolled
from tests.support import relying_system_client


def _client(runtime: Runtime, live_server: str, name: str) -> KysoClient:
    client_id, secret = relying_system_client(runtime, name)
    return KysoClient(live_server, client_id=client_id, client_secret=secret)


@pytest.fixture
def limits(runtime: Runtime) -> Iterator[None]:
    saved = (runtime.settings.rate_limit_per_minute, runtime.settings.max_pending_per_relying_system)
    yield
    runtime.settings.rate_limit_per_minute, runtime.settings.max_pending_per_relying_system = saved


def _raw(n: int) -> dict:  # type: ignore[type-arg]
    return {"hashes": [{"hash": base64.b64encode(hashlib.sha256(f"limit {n}".encode()).digest()).decode(),
                        "title": f"UNC {n}"}]}


def test_rate_limit_answers_429_with_retry_after(runtime: Runtime, live_server: str, enrolled: Enrolled,
                                                 limits: None) -> None:
    runtime.settings.rate_limit_per_minute = 3
    kyso = _client(runtime, live_server, "dvc-rate")
    other = _client(runtime, live_server, "dvc-rate-other")
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {kyso.access_token}"}) as http:
        for n in range(3):
            created = http.post("/v1/requests", json={"credential_id": enrolled.rsa, **_raw(n)})
            assert created.status_code == 201, created.text
            http.post(f"/v1/requests/{created.json()['request_id']}/cancel")
        refused = http.post("/v1/requests", json={"credential_id": enrolled.rsa, **_raw(3)})
        assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited"), refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    with pytest.raises(KysoError) as csc_refused:
        kyso.authorize(enrolled.rsa, [hashlib.sha256(b"csc").digest()])
    assert (csc_refused.value.status, csc_refused.value.error) == (429, "too_many_requests")
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {other.access_token}"}) as http:
        created = http.post("/v1/requests", json={"credential_id": enrolled.rsa, **_raw(4)})  # another system: its own limit
        assert created.status_code == 201, created.text
        http.post(f"/v1/requests/{created.json()['request_id']}/cancel")


def test_pending_cap_answers_429_until_requests_are_decided(runtime: Runtime, live_server: str, enrolled: Enrolled,
                                                            limits: None) -> None:
    runtime.settings.max_pending_per_relying_system = 2
    kyso = _client(runtime, live_server, "dvc-pending")
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {kyso.access_token}"}) as http:
        ids = [http.post("/v1/requests", json={"credential_id": enrolled.ec, **_raw(10 + n)}).json()["request_id"]
               for n in range(2)]
        refused = http.post("/v1/requests", json={"credential_id": enrolled.ec, **_raw(12)})
        assert (refused.status_code, refused.json()["code"]) == (429, "too_many_pending"), refused.text
        assert refused.headers["Retry-After"] == str(runtime.settings.pending_retry_seconds)
        http.post(f"/v1/requests/{ids[0]}/cancel")
        created = http.post("/v1/requests", json={"credential_id": enrolled.ec, **_raw(13)})
        assert created.status_code == 201, created.text
        for request_id in (ids[1], created.json()["request_id"]):
            http.post(f"/v1/requests/{request_id}/cancel")
