"""Crash safety: SIGKILL a worker of ``kyso serve --workers 2`` 20 times at random moments while CSC
batches and CAdES requests run, let the supervisor restart it, then check that every request ended,
that the HSM signed exactly what consumed authorisations cover (OpenSC's pkcs11-spy counts
``C_SignInit`` between kyso and SoftHSM; python-pkcs11 calls ``C_Sign`` twice per signature), that every signed document is whole,
and that ``kyso audit verify`` passes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from broker.db.engine import make_engine
from kyso.sandbox import free_port
from kyso_device.client import DeviceClient, enroll
from tests.ops.test_workers import kyso, wait_ready
from tests.support import REPO, AutoApprover, fresh_schema, postgres_url, require_tool

SPY = Path("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so")
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
KILLS = 20
FINAL = {"signed", "failed", "expired"}


def _spy() -> Path:
    for candidate in (SPY, Path("/usr/lib/aarch64-linux-gnu/pkcs11-spy.so")):
        if candidate.exists():
            return candidate
    require_tool("pkcs11-spy.so")  # fails under CI, skips elsewhere
    raise AssertionError


def _worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing spawn children, not its resource tracker)."""
    pids = []
    for child in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"resource_tracker" not in cmdline:
            pids.append(int(child))
    return pids


class Load:
    """CSC authorize + signHash batches and CAdES requests in a loop; errors during kills are expected."""

    def __init__(self, base_url: str, token: str, credential_id: str) -> None:
        self.base_url, self.credential_id = base_url, credential_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stop = threading.Event()
        self.n = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._csc, daemon=True), threading.Thread(target=self._cades, daemon=True),
                        threading.Thread(target=self._cades, daemon=True)]

    def _next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n

    def _csc(self) -> None:
        while not self.stop.is_set():
            digests = [base64.b64encode(hashlib.sha256(f"kill {self._next()}".encode()).digest()).decode() for _ in range(3)]
            try:
                auth = httpx.post(f"{self.base_url}/csc/v2/credentials/authorize", headers=self.headers, timeout=30,
                                  json={"credentialID": self.credential_id, "numSignatures": 3, "hashes": digests,
                                        "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1"})
                if auth.status_code == 200:
                    httpx.post(f"{self.base_url}/csc/v2/signatures/signHash", headers=self.headers, timeout=30,
                               json={"credentialID": self.credential_id, "SAD": auth.json()["SAD"], "hashes": digests,
                                     "hashAlgorithmOID": "2.16.840.1.101.3.4.2.1", "signAlgo": "1.2.840.10045.4.3.2"})
            except httpx.HTTPError:
                time.sleep(0.2)

    def _cades(self) -> None:
        while not self.stop.is_set():
            content = base64.b64encode(f"<UNC n='{self._next()}'/>".encode()).decode()
            try:
                httpx.post(f"{self.base_url}/v1/requests", headers=self.headers, timeout=30, json={
                    "credential_id": self.credential_id, "format": "cades",
                    "documents": [{"content": content, "title": "UNC"}, {"content": content, "title": "UNC (2)"}]})
            except httpx.HTTPError:
                time.sleep(0.2)
            time.sleep(0.1)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.fixture
def spied_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, dict[str, str], dict[str, str]]]:
    url = postgres_url()
    spy = _spy()
    fresh_schema(url)
    data_dir = tmp_path / "data"
    env = {**os.environ, "KYSO_DATABASE_URL": url}
    env.pop("KYSO_DATA_DIR", None)
    prepared = subprocess.run([sys.executable, "-m", "tests.ops.prepare_data_dir", str(data_dir)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)
    assert prepared.returncode == 0, prepared.stderr
    info = json.loads(prepared.stdout.strip().splitlines()[-1])
    spy_log = tmp_path / "pkcs11-spy.log"
    env.update({"KYSO_HSM_MODULE": str(spy), "PKCS11SPY": SOFTHSM, "PKCS11SPY_OUTPUT": str(spy_log),
                "KYSO_RESERVATION_TIMEOUT_SECONDS": "2", "KYSO_SAD_SECONDS": "3", "KYSO_AUTHORIZE_WAIT_SECONDS": "5",
                "KYSO_REQUEST_TTL_SECONDS": "20", "KYSO_AUDIT_CHECKPOINT_EVERY": "0", "KYSO_LOG_FORMAT": "text"})
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(kyso("--data-dir", str(data_dir), "serve", "--workers", "2", "--port", str(port)),
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, server, time.monotonic() + 90)
        yield base_url, server, spy_log, info, env
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


def _rows(url: str, credential_id: str) -> tuple[dict[str, str], int, int]:
    """Request states; signatures stored (consumed authorisations); hashes voided as 'outcome unknown'."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            states = dict(conn.execute(text("SELECT id, state FROM signing_requests WHERE credential_id = :c"),
                                       {"c": credential_id}).all())
            consumed = conn.execute(text(
                "SELECT count(*) FROM request_items i JOIN signing_requests r ON r.id = i.request_id "
                "WHERE r.credential_id = :c AND i.state = 'consumed' AND i.signature IS NOT NULL"),
                {"c": credential_id}).scalar_one()
            unknown = conn.execute(text(
                "SELECT count(*) FROM request_items i JOIN signing_requests r ON r.id = i.request_id "
                "WHERE r.credential_id = :c AND r.failure_reason LIKE 'outcome_unknown%'"), {"c": credential_id}).scalar_one()
    finally:
        engine.dispose()
    return states, int(consumed), int(unknown)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_signs_nothing_twice(spied_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, server, spy_log, info, env = spied_server
    token = httpx.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(info["client_id"], info["client_secret"])).json()["access_token"]
    # The signer approves everything, and keeps trying while workers die under it.
    phone = AutoApprover([DeviceClient(enroll(base_url, info["activation_code"], "kill-test-phone"),
                                       httpx.Client(base_url=base_url, timeout=30))])
    rng = random.Random(24)
    killed = 0
    try:
        with Load(base_url, token, info["credential_id"]):
            time.sleep(1.0)
            while killed < KILLS:
                time.sleep(rng.uniform(0.1, 1.2))
                workers = _worker_pids(server.pid)
                if len(workers) < 2:
                    continue  # the supervisor is still restarting the last one
                os.kill(rng.choice(workers), signal.SIGKILL)
                killed += 1
            wait_ready(base_url, server, time.monotonic() + 60)
        deadline = time.monotonic() + 90
        while True:  # the survivors finish, reclaim and expire what the dead left
            states, consumed, unknown = _rows(env["KYSO_DATABASE_URL"], info["credential_id"])
            open_ = [s for s in states.values() if s not in FINAL]
            if not open_ or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        phone.stop()
    assert not open_, f"requests left open: {open_}"
    assert sum(1 for s in states.values() if s == "signed") >= 10, states  # real work happened between kills
    sign_inits = len(re.findall(r"C_SignInit", spy_log.read_text(errors="replace")))
    # Every stored signature went through the HSM once; the only HSM signatures without a stored result
    # are reservations a kill interrupted, which ended failed (outcome unknown) and were never redone.
    assert consumed <= sign_inits <= consumed + unknown, (consumed, sign_inits, unknown)
    print(f"{killed} kills: {len(states)} requests {sorted(set(states.values()))}, {consumed} signatures stored, "
          f"{sign_inits} HSM signatures, {unknown} hashes of interrupted reservations")
    _check_signed_documents(base_url, token, env["KYSO_DATABASE_URL"], info["credential_id"], tmp_path)
    plain_env = {k: v for k, v in env.items() if not k.startswith("PKCS11SPY")} | {"KYSO_HSM_MODULE": SOFTHSM}
    verified = subprocess.run(kyso("--data-dir", str(tmp_path / "data"), "audit", "verify"), cwd=REPO, env=plain_env,
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _check_signed_documents(base_url: str, token: str, url: str, credential_id: str, tmp_path: Path) -> None:
    """No half-written result is ever served: every signed CAdES request's files verify."""
    from asn1crypto import cms

    engine = make_engine(url)
    with engine.connect() as conn:
        signed = [r for (r,) in conn.execute(text(
            "SELECT id FROM signing_requests WHERE credential_id = :c AND state = 'signed' AND format = 'cades'"),
            {"c": credential_id})]
    engine.dispose()
    headers = {"Authorization": f"Bearer {token}"}
    for request_id in signed:
        body = httpx.get(f"{base_url}/v1/requests/{request_id}", headers=headers, timeout=30).json()
        for link in body["documents"]:
            path = "/" + link.split("://", 1)[1].split("/", 1)[1]  # the link names the public base URL
            data = httpx.get(f"{base_url}{path}", headers=headers, timeout=30).content
            info = cms.ContentInfo.load(data)
            assert info["content_type"].native == "signed_data" and len(info["content"]["signer_infos"]) == 1
