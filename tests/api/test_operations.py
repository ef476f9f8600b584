"""Operations: request ids, JSON logs without secrets, Prometheus metrics (one and several processes),
and readiness following the database and the HSM token (Decision 22). Real servers, real token."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.middleware import RequestContextMiddleware
from broker import clients
from broker.db.engine import transaction
from broker.observability.logs import make_handler
from broker.runtime import Runtime
from broker.settings import Settings
from ca_adapters.emulator import EmulatorSet
from hsm import Hsm
from hsm.store import token_store_dir
from kyso_client import KysoClient
from tests.api.test_csc import AutoApprover
from tests.api.test_device_protocol import make_device
from tests.conftest import ACTOR, Enrolled
from tests.private_postgres import PrivatePostgres
from tests.support import REPO

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


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """``check()``'s first truthy result, or its last one when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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
    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, "dvc-ops", ["U001"])
        client, secret = clients.add_client(s, ACTOR, "dvc-ops")
    token = KysoClient(live_server, client_id=client.client_id, client_secret=secret).access_token
    approver = AutoApprover([make_device(runtime, live_server, "lan")])
    with httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        yield Ops(http, live_server, client.client_id, secret, token)
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


# -- readiness and the database, in this process (the session's token) -------------------------------


def _readyz(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_readyz_follows_an_sqlite_database(settings: Settings, hsm: Hsm, tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    runtime = Runtime(settings.model_copy(update={"database_url": f"sqlite:///{missing / 'kyso.db'}"}), hsm=hsm)
    client = TestClient(create_app(runtime))  # no lifespan: no signing worker on this runtime
    try:
        status, body = _readyz(client)
        assert status == 503 and body["checks"]["database"].startswith("down: ") and body["checks"]["hsm"] == "ok"
        missing.mkdir()
        status, body = _readyz(client)
        assert status == 200 and body["ready"] is True
    finally:
        runtime.engine.dispose()


def test_readyz_follows_a_private_postgresql_cluster(settings: Settings, hsm: Hsm) -> None:
    cluster = PrivatePostgres()
    runtime: Runtime | None = None
    try:
        cluster.start()
        runtime = Runtime(settings.model_copy(update={"database_url": cluster.url}), hsm=hsm)
        client = TestClient(create_app(runtime))
        assert _readyz(client)[0] == 200
        cluster.stop()
        status, body = _readyz(client)
        assert status == 503 and body["checks"]["database"].startswith("down: ") and body["checks"]["hsm"] == "ok"
        cluster.start()
        assert eventually(lambda: _readyz(client)[0] == 200, timeout=10)
    finally:
        if runtime is not None:
            runtime.engine.dispose()
        cluster.remove()


# -- a server in its own process: its own token store, JSON logs, multi-process metrics ---------------

SERVER = r"""
import sys
from pathlib import Path
from broker.observability.multiprocess import prepare_multiprocess_dir
prepare_multiprocess_dir(Path(sys.argv[2]))  # before prometheus_client is first imported
from broker.observability.logs import configure_logging
configure_logging(default="json")
import uvicorn
from api.app import create_app
from broker.runtime import Runtime
from broker.settings import load_settings
runtime = Runtime(load_settings(Path(sys.argv[1])))
runtime.hsm
uvicorn.run(create_app(runtime), host="127.0.0.1", port=int(sys.argv[3]), log_config=None, access_log=False)
"""

ANOTHER_WORKER = r"""
from broker.observability import metrics
for _ in range(5):
    metrics.record_http("GET", "/healthz", 200, 0.001)
for _ in range(2):
    metrics.record_signature("cades", "B-LTA", "expired")
"""


@dataclass
class Served:
    url: str
    data_dir: Path
    metrics_dir: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("ops-server")
    data_dir, metrics_dir, log = base / "data", base / "prometheus", base / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYSO_", "PROMETHEUS_", "SOFTHSM2_"))}
    subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), "init", "--sandbox"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    (metrics_dir / "counter_999999.db").parent.mkdir(parents=True)
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")  # must be wiped at start
    env |= {"KYSO_READINESS_CACHE_SECONDS": "0.2", "KYSO_READINESS_PROBE_TIMEOUT_SECONDS": "1",
            "KYSO_LOG_FORMAT": "json"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", SERVER, str(data_dir), str(metrics_dir), str(port)],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert eventually(up, timeout=60, interval=0.2), log.read_text()
        yield Served(url, data_dir, metrics_dir, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def test_readyz_reports_providers_without_depending_on_them(served: Served) -> None:
    response = httpx.get(f"{served.url}/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "hsm": "ok"}
    assert set(body["providers"]) == {"misa", "nacencomm", "viettel", "vnpt"}
    assert all(p["tsa"].startswith("down: ") and p["ocsp"].startswith("down: ") for p in body["providers"].values())

    def vnpt() -> dict[str, Any]:
        response = httpx.get(f"{served.url}/readyz")
        assert response.status_code == 200  # a provider never makes the node unready
        return response.json()["providers"]["vnpt"]  # type: ignore[no-any-return]

    emulators = EmulatorSet(served.data_dir / "pki", ["vnpt"]).start()
    try:
        assert eventually(lambda: vnpt() == {"tsa": "ok", "ocsp": "ok"}, timeout=10), vnpt()
        emulators.state("vnpt").outages = {"tsa"}
        assert eventually(lambda: vnpt() == {"tsa": "down: HTTP 503", "ocsp": "ok"}, timeout=10), vnpt()
    finally:
        emulators.stop()


def test_readyz_turns_503_when_the_token_is_missing_and_200_when_it_is_back(served: Served,
                                                                          tmp_path: Path) -> None:
    [token_dir] = (token_store_dir(served.data_dir) / "tokens").iterdir()
    away = tmp_path / "token-away"
    shutil.move(str(token_dir), str(away))
    try:
        response = httpx.get(f"{served.url}/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["checks"] == {"database": "ok", "hsm": "down: hsm_token_missing"}
        time.sleep(1.0)  # a few recovery attempts fail meanwhile
        assert httpx.get(f"{served.url}/readyz").status_code == 503
    finally:
        shutil.move(str(away), str(token_dir))
    assert eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200, timeout=20)
    assert httpx.get(f"{served.url}/readyz").json()["checks"]["hsm"] == "ok"
    assert any("HSM token recovered" in line for line in served.log.read_text().splitlines())
