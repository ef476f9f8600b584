"""Signatures/s through ``kyso serve`` with 1 and 2 workers on PostgreSQL, as ratios to the raw HSM
rate measured in the same run (RSA-2048 CKM_RSA_PKCS, 1 and 2 threads, in this process).

CSC: batches of 50 hashes, each ``credentials/authorize`` (the simulated phone's approval inside the
timed window) then ``signatures/signHash``. CAdES: REST requests of 10 documents (B-B, detached),
created then long-polled until signed; a signature is a signed document. PAdES: single-document
B-B requests (a 1-page payment order, an invisible signature: upload, create, long poll, download),
also as a ratio to plain pyHanko in this process (``bench.pades``'s baseline, the same HSM key). All
from the same number of client threads, each operation on a new connection so that the kernel
spreads them over the workers.

Database: ``KYSO_BENCH_DATABASE_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/kyso_bench``,
created if missing and emptied at every run. Usage: ``python -m bench.workers [--seconds N] [--clients N]``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.pades import INVISIBLE_FIELD, pyhanko_rates
from bench.scratch import fresh_database, scratch_credential
from bench.signing import rate
from biometrics import Decision
from broker import credentials
from demo.documents import write_payment_order_pdf
from hsm import SignatureScheme
from kyso.sandbox import free_port
from kyso_device.client import DeviceClient, DeviceState, enroll

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/kyso_bench"
REPO = Path(__file__).resolve().parent.parent
SHA256, RSA_SHA256 = "2.16.840.1.101.3.4.2.1", "1.2.840.113549.1.1.11"
BATCH, DOCUMENTS = 50, 10
PHONES = 4
CONTENT = base64.b64encode(b"<PaymentOrder>" + b"x" * 2000 + b"</PaymentOrder>").decode()


def baseline_rates(tmp: Path, pdf: Path, seconds: float) -> tuple[float, float, float]:
    """SoftHSM alone, 1 and 2 threads, and plain pyHanko's invisible PAdES rate, on one key (this
    process's one token store: SoftHSM reads its configuration once per process)."""
    data_dir = tmp / "raw"
    runtime, credential = scratch_credential(data_dir)
    try:
        digest = hashlib.sha256(b"raw").digest()

        def sign(_: int) -> None:
            runtime.hsm.sign_digest(credential.id, digest, "sha256", SignatureScheme.RSA_PKCS1_V15)

        key = credentials.key_signer(runtime.hsm, credential)
        pyhanko = pyhanko_rates(key, pdf, tmp / "pyhanko-out.pdf", seconds / 2)[INVISIBLE_FIELD]
        return rate(sign, seconds), rate(sign, seconds, threads=2), pyhanko
    finally:
        runtime.close()


@contextmanager
def serving(data_dir: Path, env: dict[str, str], workers: int, log: Path) -> Iterator[str]:
    """``kyso serve --workers N`` until the block ends; yields its URL once every worker answers."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), "serve",
                                    "--workers", str(workers), "--port", str(port)],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        pids: set[str] = set()
        deadline = time.monotonic() + 90
        while len(pids) < workers:  # each /readyz on a new connection: whichever worker accepts answers
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"kyso serve --workers {workers} did not start:\n{log.read_text()[-3000:]}")
            try:
                response = httpx.get(f"{url}/readyz", timeout=5)
                if response.status_code == 200:
                    pids.add(response.headers["x-kyso-worker"])
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


class Phones:
    """The signers' simulated phones (several devices per signer, as a signer busier than one phone's
    round trips would be). One poller per signer long-polls its pending requests and hands each new one
    to one of that signer's devices, which approves it: the server sees a phone's polls once per
    signer, not once per device (several devices polling one signer's list would each get every pending
    request back at once, a tight loop the server pays for)."""

    def __init__(self, states: list[DeviceState], base_url: str) -> None:
        self.devices = [DeviceClient(state, httpx.Client(base_url=base_url, timeout=60)) for state in states]
        self.stopping = threading.Event()
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[dict[str, Any] | None]] = [queue.Queue() for _ in self.devices]
        self._threads = [threading.Thread(target=self._decide, args=(n,), daemon=True) for n in range(len(self.devices))]
        self._pollers: list[threading.Thread] = []

    def start(self) -> None:
        by_user: dict[str, list[int]] = {}
        for n, device in enumerate(self.devices):
            by_user.setdefault(device.state.username, []).append(n)
        self._pollers = [threading.Thread(target=self._poll, args=(indexes,), daemon=True) for indexes in by_user.values()]
        for thread in (*self._threads, *self._pollers):
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for q in self._queues:
            q.put(None)
        for thread in (*self._pollers, *self._threads):
            thread.join(timeout=10)

    def _poll(self, indexes: list[int]) -> None:
        poller, turn = self.devices[indexes[0]], 0
        while not self.stopping.is_set():
            try:
                for request in poller.pending(wait=1, changed_only=True):  # answered when the list changes
                    with self._lock:
                        if request["request_id"] in self._taken:
                            continue
                        self._taken.add(request["request_id"])
                    self._queues[indexes[turn % len(indexes)]].put(request)
                    turn += 1
            except Exception as exc:  # noqa: BLE001 - a client then fails on its own, loudly
                print(f"phone: {exc!r}", file=sys.stderr)
                time.sleep(0.2)

    def _decide(self, n: int) -> None:
        device, todo = self.devices[n], self._queues[n]
        while (request := todo.get()) is not None:
            try:
                device.decide(request, Decision.APPROVE)
            except Exception as exc:  # noqa: BLE001 - a client then fails on its own, loudly
                print(f"phone: {exc!r}", file=sys.stderr)


def csc_batch(url: str, headers: dict[str, str], credential_id: str, label: str) -> int:
    hashes = [base64.b64encode(hashlib.sha256(f"{label}/{k}".encode()).digest()).decode() for k in range(BATCH)]
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        auth = http.post("/csc/v2/credentials/authorize", json={
            "credentialID": credential_id, "numSignatures": BATCH, "hashes": hashes, "hashAlgorithmOID": SHA256})
        auth.raise_for_status()
        signed = http.post("/csc/v2/signatures/signHash", json={
            "credentialID": credential_id, "SAD": auth.json()["SAD"], "hashes": hashes, "hashAlgorithmOID": SHA256,
            "signAlgo": RSA_SHA256})
        signed.raise_for_status()
        return len(signed.json()["signatures"])


def wait_signed(http: httpx.Client, request_id: str) -> dict[str, Any]:
    """Long-poll a REST request until it is signed; its status (an error if it ended otherwise)."""
    while True:
        polled = http.get(f"/v1/requests/{request_id}", params={"wait": 25})
        polled.raise_for_status()
        body: dict[str, Any] = polled.json()
        if body["state"] == "signed":
            return body
        if body["state"] not in ("pending", "approved"):
            raise RuntimeError(f"request {request_id} ended {body['state']}")


def cades_request(url: str, headers: dict[str, str], credential_id: str, label: str) -> int:
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        created = http.post("/v1/requests", json={
            "credential_id": credential_id, "format": "cades",
            "documents": [{"content": CONTENT, "title": f"UNC {label}/{k}"} for k in range(DOCUMENTS)]})
        created.raise_for_status()
        wait_signed(http, created.json()["request_id"])
        return DOCUMENTS


def pades_request(pdf: bytes, url: str, headers: dict[str, str], credential_id: str, label: str) -> int:
    """One document in one call (upload + request, answered once signed: ``Prefer: wait``), then its download."""
    request = {"credential_id": credential_id, "format": "pades",
               "documents": [{"title": f"UNC {label}", "field": INVISIBLE_FIELD}]}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        created = http.post("/v1/requests/with-documents", headers={"Prefer": "wait=30"},
                            files=[("request", (None, json.dumps(request), "application/json")),
                                   ("document", ("order.pdf", pdf, "application/pdf"))])
        created.raise_for_status()
        signed = created.json()
        if signed["state"] != "signed":
            signed = wait_signed(http, signed["request_id"])
        # The link is under the public base URL; this server is reached at another port.
        http.get(httpx.URL(signed["documents"][0]).path).raise_for_status()
        return 1


Operation = Callable[[str, dict[str, str], str, str], int]


def run_clients(operation: Operation, url: str, headers: dict[str, str], credential_id: str, clients: int,
                seconds: float, label: str, measure: Callable[[], float] = lambda: 0.0) -> tuple[int, float, float]:
    """``clients`` threads run ``operation`` in a loop for about ``seconds`` (after one warm-up call):
    the units done, the wall time, and what ``measure`` (say, a process's CPU time) grew by meanwhile."""
    operation(url, headers, credential_id, f"{label}-warm-up")  # first-use costs stay out of the window
    counts = [0] * clients
    errors: list[BaseException] = []
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        i = 0
        try:
            while time.perf_counter() < stop:
                counts[n] += operation(url, headers, credential_id, f"{label}-{n}-{i}")
                i += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    before, start = measure(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, grown = time.perf_counter() - start, measure() - before
    if errors:
        raise errors[0]
    return sum(counts), wall, grown


def throughput(operation: Operation, url: str, headers: dict[str, str], credential_id: str, clients: int,
               seconds: float, label: str) -> float:
    """Signatures/s of ``clients`` threads running ``operation`` in a loop for about ``seconds``."""
    units, wall, _ = run_clients(operation, url, headers, credential_id, clients, seconds, label)
    return units / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--clients", type=int, default=8, help="client threads against the server")
    args = parser.parse_args()
    url = os.environ.get("KYSO_BENCH_DATABASE_URL", DEFAULT_URL)
    fresh_database(url)
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        pdf = tmp / "order.pdf"
        write_payment_order_pdf(pdf)
        raw1, raw2, pyhanko = baseline_rates(tmp, pdf, args.seconds)
        pades_operation = functools.partial(pades_request, pdf.read_bytes())
        env = {**os.environ, "KYSO_DATABASE_URL": url, "KYSO_LOG_FORMAT": "text",
               # many requests of one relying system for one signer: measure the workers, not the caps
               "KYSO_RATE_LIMIT_PER_MINUTE": "1000000", "KYSO_MAX_PENDING_PER_USER": "1000"}
        for variable in ("KYSO_DATA_DIR", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(variable, None)
        data_dir = tmp / "data"
        prepared = subprocess.run([sys.executable, "-m", "tests.ops.prepare_data_dir", str(data_dir), "--key",
                                   "rsa-2048", "--phones", str(PHONES)], cwd=REPO, env=env, capture_output=True,
                                  text=True, timeout=300)
        if prepared.returncode != 0:
            raise SystemExit(prepared.stderr)
        info = json.loads(prepared.stdout.strip().splitlines()[-1])
        credential_id = info["credential_id"]
        phone_states: list[DeviceState] = []
        results: list[tuple[str, float]] = [("raw HSM RSA-2048 PKCS#1 v1.5, 1 thread", raw1),
                                            ("raw HSM RSA-2048 PKCS#1 v1.5, 2 threads", raw2)]
        by_workers: dict[tuple[str, int], float] = {}
        for workers in (1, 2):
            with serving(data_dir, env, workers, tmp / f"serve-{workers}.log") as base_url:
                if not phone_states:  # enrolled once, in the database both servers share
                    phone_states = [enroll(base_url, code, f"bench-phone-{n}")
                                    for n, code in enumerate(info["activation_codes"])]
                phones = Phones(phone_states, base_url)
                phones.start()
                token = httpx.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"},
                                   auth=(info["client_id"], info["client_secret"])).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                plural = "s" if workers > 1 else ""
                for kind, operation, title in (("csc", csc_batch, f"CSC authorize+signHash ({BATCH} hashes)"),
                                               ("cades", cades_request, f"CAdES B-B REST ({DOCUMENTS} docs)"),
                                               ("pades", pades_operation, "PAdES B-B REST (1 doc, invisible)")):
                    value = throughput(operation, base_url, headers, credential_id, args.clients, args.seconds,
                                       f"{kind}-{workers}")
                    by_workers[(kind, workers)] = value
                    results.append((f"{title}, {workers} worker{plural}, {args.clients} clients", value))
                phones.stop()
    width = max(len(name) for name, _ in results)
    print(f"{'measurement':<{width}}  {'sig/s':>9}  {'÷ raw 1 thread':>14}  {'÷ raw 2 threads':>15}")
    for name, value in results:
        print(f"{name:<{width}}  {value:9.1f}  {value / raw1:14.3f}  {value / raw2:15.3f}")
    print(f"2 workers ÷ 1 worker: CSC {by_workers[('csc', 2)] / by_workers[('csc', 1)]:.2f}, "
          f"CAdES {by_workers[('cades', 2)] / by_workers[('cades', 1)]:.2f}, "
          f"PAdES {by_workers[('pades', 2)] / by_workers[('pades', 1)]:.2f}; cores: {os.cpu_count()}")
    print(f"PAdES invisible, plain pyHanko in process: {pyhanko:.1f}/s; kyso ÷ pyHanko: "
          f"1 worker {by_workers[('pades', 1)] / pyhanko:.3f}, 2 workers {by_workers[('pades', 2)] / pyhanko:.3f} "
          f"(target ≥ 0.70)")


if __name__ == "__main__":
    main()
