"""A bounded load run on loopback: 32 clients for 60 s against ``kyso serve --workers 2`` on
PostgreSQL, mixing REST raw and CAdES requests (created, then long-polled until they end) with CSC
``authorize`` + ``signHash``, while a phone approves everything. Afterwards: no 5xx, no lost
request (every response arrived, every request created is in the database and signed), and
``/metrics``, summed over the workers, agrees exactly with what the clients saw and with the
database."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from broker.db.engine import make_engine
from kyso.sandbox import free_port
from kyso_device.client import DeviceClient, enroll
from tests.ops.test_workers import HEADER, kyso, wait_ready
from tests.support import REPO, AutoApprover, fresh_schema, postgres_url

CLIENTS = 32
SECONDS = 60.0
PHONES = 4
KINDS = ("raw", "cades", "csc")
HASHES = 5  # per raw request and per CSC batch
FINAL = {"signed", "failed", "rejected", "expired", "cancelled"}
SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
CREATE, STATUS = "/v1/requests", "/v1/requests/{request_id}"
AUTHORIZE, SIGN_HASH = "/csc/v2/credentials/authorize", "/csc/v2/signatures/signHash"


@dataclass(frozen=True)
class Call:
    """One HTTP exchange as the client saw it; status 0: no response arrived."""

    method: str
    route: str
    status: int
    retry_after: str | None = None
    worker: str | None = None


@dataclass
class Operation:
    """One signing request from creation (or authorize) until it ended (or signHash answered)."""

    kind: str
    tag: str
    request_id: str | None = None
    state: str | None = None
    seconds: float | None = None


@dataclass
class Client:
    base_url: str
    token: str
    credential_id: str
    stop_at: float
    calls: list[Call] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)

    def run(self, n: int) -> None:
        kind = KINDS[n % len(KINDS)]
        auth = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base_url, timeout=90, headers=auth) as http:
            i = 0
            while time.monotonic() < self.stop_at:
                op = Operation(kind, f"c{n}-{i}")
                started = time.perf_counter()
                response = self._csc(http, op) if kind == "csc" else self._rest(http, op)
                if op.state == "signed":
                    op.seconds = time.perf_counter() - started
                self.operations.append(op)
                if response is not None and response.status_code == 429:
                    # Honour Retry-After, but never past the end of the run.
                    left = max(0.0, self.stop_at - time.monotonic())
                    time.sleep(min(float(response.headers.get("Retry-After", "1")), left))
                i += 1

    def _call(self, http: httpx.Client, method: str, route: str, url: str,
              **kwargs: Any) -> httpx.Response | None:
        try:
            response = http.request(method, url, **kwargs)
        except httpx.HTTPError:
            self.calls.append(Call(method, route, 0))
            return None
        self.calls.append(Call(method, route, response.status_code, response.headers.get("Retry-After"),
                               response.headers.get(HEADER)))
        return response

    def _rest(self, http: httpx.Client, op: Operation) -> httpx.Response | None:
        body: dict[str, object] = {"credential_id": self.credential_id, "format": op.kind}
        if op.kind == "raw":
            body["hashes"] = [{"hash": _b64_digest(f"{op.tag}/{k}"), "title": f"UNC {op.tag}/{k}"}
                              for k in range(HASHES)]
        else:
            content = base64.b64encode(f"<UNC id='{op.tag}'>{'x' * 2000}</UNC>".encode()).decode()
            body["documents"] = [{"content": content, "title": f"UNC {op.tag}"},
                                 {"content": content, "title": f"UNC {op.tag} (bản sao)"}]
        created = self._call(http, "POST", CREATE, CREATE, json=body)
        if created is None or created.status_code != 201:
            return created
        op.request_id = created.json()["request_id"]
        while True:
            polled = self._call(http, "GET", STATUS, f"{CREATE}/{op.request_id}", params={"wait": 25})
            if polled is None or polled.status_code != 200:
                return polled
            state = polled.json()["state"]
            if state in FINAL:
                op.state = state
                return polled

    def _csc(self, http: httpx.Client, op: Operation) -> httpx.Response | None:
        hashes = [_b64_digest(f"{op.tag}/{k}") for k in range(HASHES)]
        # The description becomes the items' titles: it ties the database's row to this call.
        authorized = self._call(http, "POST", AUTHORIZE, AUTHORIZE, json={
            "credentialID": self.credential_id, "numSignatures": HASHES, "hashes": hashes,
            "hashAlgorithmOID": SHA256, "description": f"load {op.tag}"})
        if authorized is None or authorized.status_code != 200:
            return authorized
        signed = self._call(http, "POST", SIGN_HASH, SIGN_HASH, json={
            "credentialID": self.credential_id, "SAD": authorized.json()["SAD"], "hashes": hashes,
            "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256})
        if signed is not None and signed.status_code == 200 and len(signed.json()["signatures"]) == HASHES:
            op.state = "signed"
        return signed


def _b64_digest(label: str) -> str:
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any], str, Path]]:
    url = postgres_url()
    fresh_schema(url)
    data_dir = tmp_path / "data"
    env = {**os.environ, "KYSO_DATABASE_URL": url,
           # 32 clients of one relying system for one signer: lift the per-minute and per-signer caps,
           # which would otherwise answer 429 / 403 and measure the limits rather than the workers.
           "KYSO_RATE_LIMIT_PER_MINUTE": "1000000", "KYSO_MAX_PENDING_PER_USER": "1000", "KYSO_LOG_FORMAT": "text"}
    for name in ("KYSO_DATA_DIR", "PROMETHEUS_MULTIPROC_DIR"):  # the server uses DATA_DIR/prometheus, emptied at start
        env.pop(name, None)
    prepared = subprocess.run([sys.executable, "-m", "tests.ops.prepare_data_dir", str(data_dir),
                               "--phones", str(PHONES)], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=180, check=False)
    assert prepared.returncode == 0, prepared.stderr
    info = json.loads(prepared.stdout.strip().splitlines()[-1])
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(kyso("--data-dir", str(data_dir), "serve", "--workers", "2", "--port", str(port)),
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process, time.monotonic() + 90)
        yield base_url, info, url, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _server_errors(log: Path) -> str:
    """The server's log from its first error on: what a 5xx left behind."""
    lines = log.read_text(errors="replace").splitlines()
    first = next((n for n, line in enumerate(lines) if " ERROR " in line or "Traceback" in line), len(lines))
    return "\n".join(lines[first:first + 80])


def _database(url: str, credential_id: str) -> tuple[dict[str, str], dict[str, str], int]:
    """Request states by id; CSC tags to request ids (from the items' titles); signatures stored."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            params = {"c": credential_id}
            states = dict(conn.execute(text("SELECT id, state FROM signing_requests WHERE credential_id = :c"),
                                       params).all())
            titled = conn.execute(text(
                "SELECT i.title, r.id FROM request_items i JOIN signing_requests r ON r.id = i.request_id "
                "WHERE r.credential_id = :c AND r.payload IS NULL AND i.position = 0"), params).all()
            signatures = conn.execute(text(
                "SELECT count(*) FROM request_items i JOIN signing_requests r ON r.id = i.request_id "
                "WHERE r.credential_id = :c AND i.state = 'consumed' AND i.signature IS NOT NULL"), params).scalar_one()
    finally:
        engine.dispose()
    # "load c3-7 (1/5)" -> "c3-7"
    csc_ids = {str(title).split(" ")[1]: str(request_id) for title, request_id in titled}
    return {str(k): str(v) for k, v in states.items()}, csc_ids, int(signatures)


def _metrics(base_url: str) -> tuple[Counter[str], Counter[tuple[str, str, str]]]:
    """Signatures by outcome and HTTP requests by (method, route, status), summed over the workers."""
    signatures: Counter[str] = Counter()
    http: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "kyso_signatures_total":
                signatures[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "kyso_http_requests_total":
                http[(sample.labels["method"], sample.labels["route"], sample.labels["status"])] += int(sample.value)
    return +signatures, +http


@pytest.mark.slow
@pytest.mark.postgres
def test_32_clients_for_60_seconds_against_two_workers(server: tuple[str, dict[str, Any], str, Path]) -> None:
    base_url, info, url, log = server
    token = httpx.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(info["client_id"], info["client_secret"])).json()["access_token"]
    # The signer's phones decide in parallel, each with its own counter; one request goes to one phone.
    phones = AutoApprover([DeviceClient(enroll(base_url, code, f"load-phone-{n}"),
                                        httpx.Client(base_url=base_url, timeout=60))
                           for n, code in enumerate(info["activation_codes"])], share=True)
    started = time.monotonic()
    clients = [Client(base_url, token, info["credential_id"], started + SECONDS) for _ in range(CLIENTS)]
    threads = [threading.Thread(target=c.run, args=(n,), daemon=True) for n, c in enumerate(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:  # each finishes the request it is in
            t.join(timeout=SECONDS + 60)
        elapsed = time.monotonic() - started
    finally:
        phones.stop()
    assert not any(t.is_alive() for t in threads), "a client never finished its last request"
    assert not phones.errors, phones.errors[:5]
    calls = [c for client in clients for c in client.calls]
    operations = [op for client in clients for op in client.operations]

    # No 5xx, every call answered, and the only refusals are 429s that say when to come back.
    statuses = Counter(c.status for c in calls)
    assert not [s for s in statuses if s >= 500 or s == 0], (statuses, [c for c in calls if c.status >= 500],
                                                             _server_errors(log))
    assert all(c.retry_after for c in calls if c.status == 429)
    assert not [c for c in calls if 400 <= c.status != 429], [c for c in calls if 400 <= c.status != 429][:10]
    assert len({c.worker for c in calls}) == 2, "both workers should have served"

    # Every request a client created is in the database and ended signed; nothing else is there.
    states, csc_ids, signatures = _database(url, info["credential_id"])
    rest = {op.request_id: op for op in operations if op.request_id}
    csc = [op for op in operations if op.kind == "csc"]
    authorized = {op.tag for op in csc if op.state == "signed"}
    assert set(rest) <= set(states), set(rest) - set(states)
    assert authorized <= set(csc_ids), authorized - set(csc_ids)
    assert set(states) == set(rest) | set(csc_ids.values()), "rows no client accounts for"
    assert Counter(states.values()) == {"signed": len(states)}, Counter(states.values())
    assert all(op.state == "signed" for op in rest.values())
    assert len(csc_ids) == sum(1 for c in calls if c.route == AUTHORIZE and c.status == 200) == len(authorized)
    assert signatures == HASHES * len(authorized) + sum(HASHES if op.kind == "raw" else 2 for op in rest.values())
    kinds = Counter(op.kind for op in operations if op.state == "signed")
    assert all(kinds[k] > 0 for k in KINDS), kinds

    # /metrics, summed over both workers, agrees with the clients and the database. A worker counts
    # a request just after it answered, so give the last ones a moment.
    seen = Counter((c.method, c.route, str(c.status)) for c in calls)
    deadline = time.monotonic() + 10
    while True:
        by_outcome, counted = _metrics(base_url)
        served = Counter({k: v for k, v in counted.items() if k[1] in (CREATE, STATUS, AUTHORIZE, SIGN_HASH)})
        if (by_outcome == Counter(states.values()) and served == seen) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert by_outcome == Counter(states.values()), (by_outcome, Counter(states.values()))
    assert counted[("POST", CREATE, "201")] == len(rest) == len(set(states) - set(csc_ids.values()))
    assert served == seen, (served - seen, seen - served)

    latencies = sorted(op.seconds * 1000 for op in operations if op.seconds is not None)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"\nload: {len(operations)} requests ({kinds['raw']} raw, {kinds['cades']} CAdES, {kinds['csc']} CSC) "
          f"from {CLIENTS} clients on 2 workers in {elapsed:.1f} s, {len(calls)} HTTP calls {dict(statuses)}, "
          f"{signatures} signatures = {signatures / elapsed:.1f}/s, request to signed p50 "
          f"{statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms")
