"""CSC ``signHash`` throughput and latency against ``kyso sandbox``.

Raw rate: RSA-2048 CKM_RSA_PKCS through :class:`hsm.Hsm` on 2 threads and 2 sessions in this
process, each thread signing runs of 50 digests in its session (the HSM's own rate, one key
look-up per run), measured before and after the sandbox runs; the ratio uses their mean. For
comparison with earlier runs it also prints the rate of one ``sign_digest`` call per signature
(a key look-up each), which the ratio used to be taken against.
Throughput: batches of 50 hashes, each ``credentials/authorize`` (the simulated phone's approval
inside the timed window) then ``signatures/signHash``, from 2 client threads: the whole cycle, which
the target is judged by. Also ``signHash`` alone, its SADs fetched beforehand.
Latency: single-hash ``signHash`` calls (authorize excluded: the SADs are fetched first) from 32
client threads; first closed loop for the maximum rate, then open loop at half of it, each call
timed from its scheduled start (a late client counts its delay).
Usage: ``python -m bench.csc [--seconds N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.scratch import scratch_credential
from bench.signing import rate
from broker.runtime import Runtime
from hsm import SignatureScheme
from kyso_client import KysoClient

RSA_SHA256 = "1.2.840.113549.1.1.11"
BATCH = 50
LATENCY_CLIENTS = 32
AUTHORIZE_CLIENTS = 16  # below the sandbox's 20 pending requests per signer


def raw_signers(tmp: Path) -> tuple[Runtime, Callable[[int], None], Callable[[int], None]]:
    """A token of its own (2 sessions: no batch is split further), a function that signs one run
    of ``BATCH`` digests, and one that signs a single digest."""
    data_dir = tmp / "raw"
    runtime, credential = scratch_credential(data_dir, hsm_max_sessions=2)
    digests = [hashlib.sha256(b"raw %d" % i).digest() for i in range(BATCH)]

    def sign_run(_: int) -> None:
        runtime.hsm.sign_digests(credential.id, digests, "sha256", SignatureScheme.RSA_PKCS1_V15)

    def sign_one(i: int) -> None:
        runtime.hsm.sign_digest(credential.id, digests[i % BATCH], "sha256", SignatureScheme.RSA_PKCS1_V15)

    return runtime, sign_run, sign_one


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    data_dir = tmp / "sandbox"
    # The per-client request limit is a policy, not a cost: lift it so that it does not cap the load.
    env = {**os.environ, "KYSO_RATE_LIMIT_PER_MINUTE": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "kyso.cli", "sandbox", "--data-dir", str(data_dir),
                                "--port", "0"], stdout=open(os.environ.get("KYSO_BENCH_LOG", os.devnull), "ab"), stderr=subprocess.STDOUT, env=env)
    described = data_dir / "sandbox.json"
    while not described.exists():
        if process.poll() is not None:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.3)
    return process, json.loads(described.read_text())


def run_threads(count: int, target: Callable[[int], None]) -> float:
    """Run ``target(n)`` on ``count`` threads; the seconds it took."""
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def batch_throughput(info: dict[str, Any], credential: str, seconds: float, clients: int) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def batches(n: int) -> None:
        client = KysoClient(info["base_url"], access_token=info["access_token"])
        i = 0
        while time.perf_counter() < stop:
            hashes = [hashlib.sha256(f"{n}-{i}-{k}".encode()).digest() for k in range(BATCH)]
            auth = client.authorize(credential, hashes)
            counts[n] += len(client.sign_hash(credential, auth.sad, hashes, RSA_SHA256))
            i += 1

    elapsed = run_threads(clients, batches)
    return sum(counts) / elapsed


def sign_hash_only(info: dict[str, Any], credential: str, batches: int, clients: int) -> float:
    """Signatures/s of ``signHash`` alone over ``batches`` batches of 50 whose SADs were fetched
    beforehand (the signer's approvals outside the timed window), from ``clients`` threads."""
    client = KysoClient(info["base_url"], access_token=info["access_token"])
    ready = []
    for i in range(batches):
        hashes = [hashlib.sha256(f"only-{i}-{k}".encode()).digest() for k in range(BATCH)]
        ready.append((hashes, client.authorize(credential, hashes).sad))
    lock = threading.Lock()
    todo = iter(ready)

    def sign(_: int) -> None:
        own = KysoClient(info["base_url"], access_token=info["access_token"])
        while True:
            with lock:
                batch = next(todo, None)
            if batch is None:
                return
            own.sign_hash(credential, batch[1], batch[0], RSA_SHA256)

    return batches * BATCH / run_threads(clients, sign)


def authorise_singles(info: dict[str, Any], credential: str, count: int, tag: str) -> list[tuple[bytes, str]]:
    """``count`` single-hash SADs, fetched through the phone beforehand."""
    local = threading.local()

    def one(i: int) -> tuple[bytes, str]:
        if not hasattr(local, "client"):
            local.client = KysoClient(info["base_url"], access_token=info["access_token"])
        digest = hashlib.sha256(f"{tag}-{i}".encode()).digest()
        return digest, local.client.authorize(credential, [digest]).sad

    with ThreadPoolExecutor(AUTHORIZE_CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def single_hash_calls(info: dict[str, Any], credential: str, sads: list[tuple[bytes, str]],
                      offered_rate: float | None) -> tuple[float, list[float]]:
    """Send one ``signHash`` per SAD from ``LATENCY_CLIENTS`` threads: as fast as they can
    (``offered_rate`` None) or open loop at ``offered_rate``; the achieved rate and the latencies (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    next_call = iter(range(len(sads)))
    ready = threading.Barrier(LATENCY_CLIENTS + 1)
    clock: list[float] = []

    def client_loop(_: int) -> None:
        client = KysoClient(info["base_url"], access_token=info["access_token"])
        client.credentials()  # connected and warm before the clock starts
        ready.wait()
        ready.wait()
        start = clock[0]
        while True:
            with lock:
                i = next(next_call, None)
            if i is None:
                return
            due = start + i / offered_rate if offered_rate else time.perf_counter()
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            digest, sad = sads[i]
            client.sign_hash(credential, sad, [digest], RSA_SHA256)
            with lock:
                latencies.append(time.perf_counter() - due)

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(LATENCY_CLIENTS)]
    for t in threads:
        t.start()
    ready.wait()
    clock.append(time.perf_counter())
    ready.wait()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - clock[0]), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the throughput run")
    parser.add_argument("--clients", type=int, default=2, help="client threads of the throughput run")
    parser.add_argument("--sign-hash-batches", type=int, default=200, help="batches of the signHash-only run")
    parser.add_argument("--latency-calls", type=int, default=1500, help="signHash calls of the open-loop run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        raw_runtime, sign_run, sign_one = raw_signers(tmp)
        raw_seconds = min(args.seconds, 5.0)
        raw_before = rate(sign_run, raw_seconds, threads=2) * BATCH
        per_call = rate(sign_one, raw_seconds, threads=2)
        process, info = start_sandbox(tmp)
        try:
            credential = next(c["credential_id"] for c in info["credentials"] if c["key_algo"] == "rsa-2048")
            throughput = batch_throughput(info, credential, args.seconds, args.clients)
            only = sign_hash_only(info, credential, args.sign_hash_batches, args.clients)
            probe = authorise_singles(info, credential, args.latency_calls, "max")
            max_rate, _ = single_hash_calls(info, credential, probe, None)
            sads = authorise_singles(info, credential, args.latency_calls, "open")
            offered = max_rate / 2
            achieved, latencies = single_hash_calls(info, credential, sads, offered)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        raw_after = rate(sign_run, raw_seconds, threads=2) * BATCH
        raw_runtime.close()
    raw2 = (raw_before + raw_after) / 2
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(f"raw HSM RSA-2048, 2 threads (before / after):    {raw_before:8.1f} / {raw_after:.1f} sig/s")
    print(f"  one sign_digest call per signature, 2 threads: {per_call:8.1f} sig/s")
    print(f"CSC authorize+signHash, batches of {BATCH}, {args.clients} clients: {throughput:8.1f} sig/s"
          f"  = {throughput / raw2:.3f} × raw (target ≥ 0.60); {throughput / per_call:.3f} × one call per signature")
    print(f"signHash alone (SADs fetched before), batches of {BATCH}: {only:8.1f} sig/s  = {only / raw2:.3f} × raw")
    print(f"single-hash signHash, {LATENCY_CLIENTS} clients, closed loop:   {max_rate:8.1f} calls/s (maximum)")
    print(f"  open loop at half of it ({offered:.1f}/s offered, {achieved:.1f}/s done, {len(latencies)} calls): "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms (target p99 < 50 ms)")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
