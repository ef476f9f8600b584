"""Operations, what a server tells: request ids, JSON logs without secrets, and Prometheus metrics
(one and several processes). Real servers, real token."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.middleware import RequestContextMiddleware
from broker.observability.logs import make_handler
from broker.runtime import Runtime
from kyso_client import KysoClient
from tests.api.conftest import Served
from tests.conftest import Enrolled
from tests.support import REPO, AutoApprover, access_token, b64, eventually, make_device, relying_system_client

GENERATED_ID = re.compile(r"[0-9a-f]{32}")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> tuple[str, Samples]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- in this process: the session's live server -------------------------------------------------------


@dataclass
class Ops:
    http: httpx.Client
    base_url: str
    client_id: str
    client_secret: str
    token: str


@pytest.fixture(scope="module")
def ops(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[Ops]:
    client_id, secret = relying_system_client(runtime, "dvc-ops")
    token = access_token(live_server, client_id, secret)
    approver = AutoApprover([make_device(runtime, live_server, "lan")])
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield Ops(http, live_server, client_id, secret, token)
    approver.stop()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What kyso's JSON handler writes, from every logger, while the test runs."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root, kyso = logging.getLogger(), logging.getLogger("kyso")
    level = kyso.level
    root.addHandler(handler)
    kyso.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    kyso.setLevel(level)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def final_state(ops: Ops, request_id: str) -> str:
    """The request's state once the phone decided and the worker finished (long polls)."""
    for _ in range(6):
        state = str(ops.http.get(f"/v1/requests/{request_id}", params={"wait": 10}).json()["state"])
        if state not in ("pending", "approved"):
            return state
    return state


def test_request_id_is_echoed_or_made_on_every_response(ops: Ops) -> None:
    url = ops.base_url
    echoed = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "portal-42.a_B"})
    assert echoed.headers["x-request-id"] == "portal-42.a_B"
    made = [httpx.get(f"{url}/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(GENERATED_ID.fullmatch(m) for m in made) and made[0] != made[1]
    for unsafe in ("two words", "x" * 65, "a;b", "<script>", ""):
        answered = httpx.get(f"{url}/healthz", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
        assert GENERATED_ID.fullmatch(answered), unsafe
    # Errors too: not found, no token, bad input, wrong method.
    errors = [
        httpx.get(f"{url}/no/such/path", headers={"X-Request-ID": "err-404"}),
        httpx.post(f"{url}/v1/requests", json={}, headers={"X-Request-ID": "err-401"}),
        ops.http.post("/v1/requests", content=b"{nope", headers={"X-Request-ID": "err-400",
                                                                  "Content-Type": "application/json"}),
        httpx.delete(f"{url}/healthz", headers={"X-Request-ID": "err-405"}),
    ]
    assert [(r.status_code, r.headers.get("x-request-id")) for r in errors] == [
        (404, "err-404"), (401, "err-401"), (400, "err-400"), (405, "err-405")]


def test_an_unhandled_error_answers_500_with_the_request_id_and_logs_it(json_log: io.StringIO) -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("broken on purpose")

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app, raise_server_exceptions=False).get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    assert response.json()["code"] == "internal_error" and "broken on purpose" not in response.text
    [error] = [line for line in log_lines(json_log) if line["message"] == "unhandled error"]
    assert error["request_id"] == "boom-1" and "RuntimeError: broken on purpose" in error["exception"]


def test_json_log_lines_carry_the_request_id_and_no_secret(ops: Ops, json_log: io.StringIO) -> None:
    # A token request (client secret in the form body), then calls with the bearer token.
    token = KysoClient(ops.base_url, client_id=ops.client_id, client_secret=ops.client_secret).access_token
    listed = httpx.get(f"{ops.base_url}/v1/credentials", timeout=30,
                       headers={"Authorization": f"Bearer {token}", "X-Request-ID": "log-check-1"})
    assert listed.status_code == 200
    refused = httpx.get(f"{ops.base_url}/v1/credentials", headers={"Authorization": "Bearer not-a-real-token-123",
                                                                   "X-Request-ID": "log-check-2"})
    assert refused.status_code == 401

    def request_line(rid: str) -> dict[str, Any] | None:
        return next((line for line in log_lines(json_log)
                     if line.get("request_id") == rid and line["message"] == "request"), None)

    line = eventually(lambda: request_line("log-check-1"), timeout=5)
    assert line is not None, json_log.getvalue()
    assert {"time", "level", "logger", "message", "request_id"} <= set(line)
    assert (line["logger"], line["level"], line["route"], line["status"]) == ("kyso.http", "info", "/v1/credentials",
                                                                              200)
    assert eventually(lambda: request_line("log-check-2"), timeout=5)["status"] == 401

    # The second line of defence: a careless log call still leaks nothing.
    logging.getLogger("kyso.test").warning(
        "client sent Authorization: Bearer %s with pin=%s", token, "246810",
        extra={"user_pin": "246810", "content": "%PDF-1.7 secret pages", "unit": "U001"})
    text = json_log.getvalue()
    for secret in (token, ops.token, ops.client_secret, "not-a-real-token-123", "246810", "secret pages"):
        assert secret not in text, secret
    careless = log_lines(json_log)[-1]
    assert careless["user_pin"] == careless["content"] == "[redacted]" and careless["unit"] == "U001"


def test_metrics_count_requests_by_route_template_and_hsm_signatures(ops: Ops, enrolled: Enrolled) -> None:
    _, before = scrape(ops.base_url)
    created = ops.http.post("/v1/requests", json={"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(hashlib.sha256(f"metrics {time.time()}".encode()).digest()), "title": "UNC metrics"}]})
    assert created.status_code == 201, created.text
    request_id = created.json()["request_id"]
    assert final_state(ops, request_id) == "signed"
    text, after = scrape(ops.base_url)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("kyso_http_requests_total", method="POST", route="/v1/requests", status="201") == 1
    assert grew("kyso_http_requests_total", method="GET", route="/v1/requests/{request_id}", status="200") >= 1
    assert grew("kyso_http_request_duration_seconds_count", route="/v1/requests") == 1
    assert grew("kyso_hsm_sign_seconds_count") >= 1
    assert request_id not in text  # route templates, never ids, in labels


def test_metrics_count_signatures_by_format_level_and_outcome(ops: Ops, enrolled: Enrolled) -> None:
    _, before = scrape(ops.base_url)
    created = ops.http.post("/v1/requests", json={"credential_id": enrolled.rsa, "hashes": [
        {"hash": b64(hashlib.sha256(f"count {time.time()}".encode()).digest()), "title": "UNC count"}]})
    assert created.status_code == 201, created.text
    assert final_state(ops, created.json()["request_id"]) == "signed"
    _, after = scrape(ops.base_url)
    labels = {"format": "raw", "level": "none", "outcome": "signed"}
    assert sample(after, "kyso_signatures_total", **labels) - sample(before, "kyso_signatures_total", **labels) >= 1


# -- a server in its own process (the ``served`` fixture): multi-process metrics, its JSON log -----------

ANOTHER_WORKER = r"""
from broker.observability import metrics
for _ in range(5):
    metrics.record_http("GET", "/healthz", 200, 0.001)
for _ in range(2):
    metrics.record_signature("cades", "B-LTA", "expired")
"""



def test_multiprocess_metrics_are_summed_over_processes(served: Served) -> None:
    assert not (served.metrics_dir / "counter_999999.db").exists()
    _, before = scrape(served.url)
    for _ in range(3):
        assert httpx.get(f"{served.url}/healthz").status_code == 200
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(served.metrics_dir)}
    subprocess.run([sys.executable, "-c", ANOTHER_WORKER], cwd=REPO, env=env, check=True, timeout=60)
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    base = sample(before, "kyso_http_requests_total", **healthz)
    after = eventually(lambda: (lambda s: s if sample(s, "kyso_http_requests_total", **healthz) >= base + 8 else None)(
        scrape(served.url)[1]), timeout=5)
    assert after and sample(after, "kyso_http_requests_total", **healthz) == base + 8, after
    assert sample(after, "kyso_signatures_total", format="cades", level="B-LTA", outcome="expired") == 2
    assert len(list(served.metrics_dir.glob("counter_*.db"))) == 2  # one file per process


def test_the_server_writes_one_json_object_per_line(served: Served) -> None:
    assert httpx.get(f"{served.url}/no/such/path", headers={"X-Request-ID": "served-404"}).status_code == 404

    def logged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in served.log.read_text().splitlines() if line.strip()]

    lines = eventually(lambda: (lambda ls: ls if any(line.get("request_id") == "served-404" for line in ls) else None)(
        logged()), timeout=5)
    assert lines, served.log.read_text()
    assert all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the server's own lines too
    [miss] = [line for line in lines if line.get("request_id") == "served-404"]
    assert (miss["route"], miss["status"], miss["path"]) == ("<unmatched>", 404, "/no/such/path")
