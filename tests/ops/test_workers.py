"""Several workers on PostgreSQL, as operators run them: ``kyso serve --workers 2`` and a second
``kyso serve`` on the same database and data dir. A waiter in one worker is woken by a change made
through another, a webhook is delivered once, the supervisor never loads PKCS#11, and SIGTERM
stops everything cleanly. On SQLite, several workers are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from biometrics import Decision
from kyso.sandbox import free_port
from kyso_device.client import DeviceClient, DeviceState, enroll
from tests.support import REPO, WebhookReceiver, fresh_schema, postgres_url

HEADER = "x-kyso-worker"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"


RECEIVER_PORT = free_port()  # the webhook allowlist names the receiver's port


def kyso(*args: str) -> list[str]:
    return [sys.executable, "-m", "kyso.cli", *args]


@dataclass
class Cluster:
    data_dir: Path
    multi: str
    """``kyso serve --workers 2``"""
    single: str
    """a second ``kyso serve`` (one worker) on the same database and data dir"""
    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    credential_id: str
    token: str
    phone: DeviceState
    env: dict[str, str]
    worker_pids: set[str] = field(default_factory=set)

    def output(self) -> str:
        return "\n".join(f"--- {name}\n{path.read_text()[-4000:]}" for name, path in self.logs.items())


def wait_ready(base_url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while True:
        assert process.poll() is None, f"kyso serve exited with {process.returncode}"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{base_url} did not become ready"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = postgres_url()
    fresh_schema(url)
    root = tmp_path_factory.mktemp("ops")
    data_dir = root / "data"
    env = {**os.environ, "KYSO_DATABASE_URL": url, "KYSO_WEBHOOK_ALLOW_PRIVATE": "true"}
    env.pop("KYSO_DATA_DIR", None)
    prepared = subprocess.run([sys.executable, "-m", "tests.ops.prepare_data_dir", str(data_dir),
                               "--webhook-allow", f"http://127.0.0.1:{RECEIVER_PORT}/hooks/"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
    assert prepared.returncode == 0, prepared.stderr
    info = json.loads(prepared.stdout.strip().splitlines()[-1])
    ports = {"multi": free_port(), "single": free_port()}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name, workers in (("multi", "2"), ("single", "1")):
            logs[name] = root / f"{name}.log"
            with logs[name].open("wb") as log:  # a file, not a pipe: a full pipe would block the server
                processes[name] = subprocess.Popen(
                    kyso("--data-dir", str(data_dir), "serve", "--workers", workers, "--port", str(ports[name])),
                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        for name, process in processes.items():
            wait_ready(f"http://127.0.0.1:{ports[name]}", process, deadline)
        multi, single = (f"http://127.0.0.1:{ports[n]}" for n in ("multi", "single"))
        token = httpx.post(f"{multi}/oauth2/token", data={"grant_type": "client_credentials"},
                           auth=(info["client_id"], info["client_secret"])).json()["access_token"]
        phone = enroll(single, info["activation_code"], "ops-phone")
        yield Cluster(data_dir, multi, single, processes, logs, info["credential_id"], token, phone, env)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


# -- helpers ------------------------------------------------------------------------------------


def authorize(base_url: str, token: str, credential_id: str, digest: bytes, out: dict[str, httpx.Response]) -> None:
    """A CSC authorize on a new connection: it waits in whichever worker accepts it."""
    out["response"] = httpx.post(f"{base_url}/csc/v2/credentials/authorize", timeout=120, headers={
        "Authorization": f"Bearer {token}"}, json={
        "credentialID": credential_id, "numSignatures": 1, "hashes": [base64.b64encode(digest).decode()],
        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "description": "Ủy nhiệm chi (workers)"})


def approve_one(phone: DeviceState, base_url: str) -> str:
    """Wait for the one pending request on a new connection to ``base_url``, approve it, and
    return the worker that took the decision."""
    seen: list[str] = []
    with httpx.Client(base_url=base_url, timeout=60,
                      event_hooks={"response": [lambda r: seen.append(r.headers.get(HEADER, ""))]}) as http:
        device = DeviceClient(phone, http)
        deadline = time.monotonic() + 30
        pending: list[dict[str, object]] = []
        while not pending:
            assert time.monotonic() < deadline, "the request never reached the phone"
            pending = device.pending(wait=10)
        [request] = pending
        device.decide(request, Decision.APPROVE)
    return seen[-1]


def round_trip(c: Cluster, authorize_on: str, approve_on: str, label: str) -> tuple[str, str, str]:
    """One authorize released by an approval; returns (SAD, authorizing worker, approving worker)."""
    out: dict[str, httpx.Response] = {}
    digest = hashlib.sha256(label.encode()).digest()
    waiter = threading.Thread(target=authorize, args=(authorize_on, c.token, c.credential_id, digest, out))
    waiter.start()
    approving = approve_one(c.phone, approve_on)
    waiter.join(timeout=60)
    response = out["response"]
    assert response.status_code == 200, response.text
    return str(response.json()["SAD"]), response.headers[HEADER], approving


def worker_pids_seen(base_url: str, want: int, timeout: float = 30) -> set[str]:
    """The workers that answer ``/readyz`` on new connections, once ``want`` of them did."""
    pids: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < want:
        assert time.monotonic() < deadline, f"only worker(s) {pids} answered"
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=5)
            if response.status_code == 200:
                pids.add(response.headers[HEADER])
        except httpx.HTTPError:
            pass
    return pids


def maps_softhsm(pid: int | str) -> bool:
    return "libsofthsm2" in Path(f"/proc/{pid}/maps").read_text()


# -- the tests ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_serve_and_only_they_load_pkcs11(cluster: Cluster) -> None:
    pids = worker_pids_seen(cluster.multi, 2)  # one connection each: the kernel hands them to either worker
    cluster.worker_pids |= pids
    parent = cluster.processes["multi"].pid
    assert str(parent) not in pids
    assert not maps_softhsm(parent), "the supervisor loaded PKCS#11 before starting its workers"
    assert all(maps_softhsm(pid) for pid in pids)
    described = json.loads((cluster.data_dir / "server.json").read_text())
    assert set(described) == {"url", "pid", "workers", "admin_socket"}
    assert described["pid"] in {p.pid for p in cluster.processes.values()}
    # The CLI's HSM work goes to a running server's workers through the admin socket (one login per token store).
    made = subprocess.run(kyso("--data-dir", str(cluster.data_dir), "audit", "checkpoint"), cwd=REPO, env=cluster.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0 and "through the running server" in made.stdout, made.stdout + made.stderr


@pytest.mark.postgres
def test_authorize_waiting_in_one_process_is_released_by_an_approval_through_another(cluster: Cluster) -> None:
    sad, authorizing, approving = round_trip(cluster, cluster.single, cluster.multi, "two servers")
    assert authorizing != approving

    digest = hashlib.sha256(b"two servers").digest()
    signed = httpx.post(f"{cluster.multi}/csc/v2/signatures/signHash", timeout=60,
                        headers={"Authorization": f"Bearer {cluster.token}"}, json={
                            "credentialID": cluster.credential_id, "SAD": sad, "signAlgo": ECDSA_SHA256,
                            "hashes": [base64.b64encode(digest).decode()],
                            "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
    assert signed.status_code == 200, signed.text
    info = httpx.post(f"{cluster.single}/csc/v2/credentials/info", headers={"Authorization": f"Bearer {cluster.token}"},
                      json={"credentialID": cluster.credential_id, "certificates": "single"}).json()
    public = x509.load_der_x509_certificate(base64.b64decode(info["cert"]["certificates"][0])).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(signed.json()["signatures"][0]), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


@pytest.mark.postgres
def test_authorize_and_approval_in_two_workers_of_one_server(cluster: Cluster) -> None:
    """Within ``--workers 2`` the kernel picks the worker: repeat until the two were different."""
    for attempt in range(25):
        _, authorizing, approving = round_trip(cluster, cluster.multi, cluster.multi, f"one server {attempt}")
        if authorizing != approving:
            return
    pytest.fail("every authorize and its approval landed in the same worker")


@pytest.mark.postgres
def test_webhooks_are_delivered_once_with_three_workers_running(cluster: Cluster) -> None:
    receiver = WebhookReceiver(fail_first=1, port=RECEIVER_PORT)  # the first call answers 500: a retry
    auth = {"Authorization": f"Bearer {cluster.token}"}
    try:
        ids = []
        for i, base in enumerate([cluster.multi, cluster.single, cluster.multi, cluster.single]):
            created = httpx.post(f"{base}/v1/requests", headers=auth, json={
                "credential_id": cluster.credential_id, "webhook_url": receiver.url,
                "hashes": [{"hash": base64.b64encode(hashlib.sha256(f"hook {i}".encode()).digest()).decode(),
                            "title": f"UNC {i}"}]})
            assert created.status_code == 201, created.text
            ids.append(created.json()["request_id"])
            approve_one(cluster.phone, cluster.multi if i % 2 else cluster.single)
        deadline = time.monotonic() + 30
        logs: dict[str, list[dict[str, object]]] = {}
        while time.monotonic() < deadline:
            logs = {i: httpx.get(f"{cluster.multi}/v1/requests/{i}/webhooks", headers=auth).json() for i in ids}
            if all(log and log[0]["state"] == "delivered" for log in logs.values()):
                break
            time.sleep(0.3)
        time.sleep(1.5)  # every worker's loop runs again meanwhile: nothing may be sent twice
        assert all(len(log) == 1 and log[0]["state"] == "delivered" for log in logs.values()), logs
        attempts = sorted(int(str(log[0]["attempts"])) for log in logs.values())
        assert attempts == [1, 1, 1, 2], logs
        assert set(receiver.events) == {str(log[0]["event_id"]) for log in logs.values()}
        assert sorted(receiver.events.values()) == [1, 1, 1, 2]  # the 500, then once more
        states = {httpx.get(f"{cluster.single}/v1/requests/{i}", headers=auth).json()["state"] for i in ids}
        assert states == {"signed"}
    finally:
        receiver.close()


@pytest.mark.postgres
def test_a_killed_worker_is_replaced_and_logs_in_again(cluster: Cluster) -> None:
    before = worker_pids_seen(cluster.multi, 2)
    victim = min(before)
    os.kill(int(victim), signal.SIGKILL)
    # The supervisor starts a new worker, which logs in while the others stay logged in.
    now_serving = worker_pids_seen(cluster.multi, 2, timeout=60)
    assert victim not in now_serving
    cluster.worker_pids |= now_serving
    round_trip(cluster, cluster.single, cluster.multi, "after a restart")


@pytest.mark.postgres
def test_sigterm_stops_every_worker_and_removes_server_json(cluster: Cluster) -> None:
    for process in cluster.processes.values():
        process.send_signal(signal.SIGTERM)
    for process in cluster.processes.values():
        assert process.wait(timeout=60) == 0, cluster.output()
    assert not (cluster.data_dir / "server.json").exists()
    for pid in cluster.worker_pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived its supervisor"


@pytest.mark.postgres
def test_workers_that_cannot_log_in_stop_the_server(cluster: Cluster) -> None:
    """A worker failing at start must not be restarted forever: kyso serve exits non-zero."""
    env = {**cluster.env, "KYSO_HSM_USER_PIN": "not-the-pin"}
    result = subprocess.run(kyso("--data-dir", str(cluster.data_dir), "serve", "--workers", "2", "--port", "0"),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "hsm_wrong_pin" in result.stderr and "worker_start_failed" in result.stderr
    assert not (cluster.data_dir / "server.json").exists()


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    (tmp_path / "kyso.toml").write_text("sandbox = true\n")  # enough for the check, which comes first
    env = {k: v for k, v in os.environ.items() if k not in ("KYSO_DATABASE_URL", "KYSO_DATA_DIR")}
    result = subprocess.run(kyso("--data-dir", str(tmp_path), "serve", "--workers", "2", "--port", "0"),
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "need PostgreSQL" in result.stderr and "KYSO_DATABASE_URL" in result.stderr, result.stderr
    assert not (tmp_path / "server.json").exists()
