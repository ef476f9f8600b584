"""CSC ``signHash`` throughput and latency against ``kyso sandbox``, as ratios to the raw HSM rate.

Raw rate: RSA-2048 CKM_RSA_PKCS on 2 threads, in this process, measured in the same run.
Throughput: batches of 50 hashes, each ``credentials/authorize`` (the simulated phone's approval
inside the timed window) then ``signatures/signHash``, from 2 client threads.
Latency: single-hash ``signHash`` calls (authorize excluded), p50 and p99, 4 client threads.
Usage: ``python -m bench.csc [--seconds N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.signing import ACTOR, rate
from broker.db.engine import transaction
from broker.db.models import Role, SigningMode
from broker.runtime import Runtime
from broker.services import credentials, directory, setup
from broker.settings import load_settings
from hsm import KeyAlgorithm, SignScheme
from kyso_client import KysoClient

RSA_SHA256 = "1.2.840.113549.1.1.11"


def raw_rate(tmp: Path, seconds: float) -> float:
    data_dir = tmp / "raw"
    setup.init_data_dir(load_settings(data_dir), ACTOR, sandbox=True)
    runtime = Runtime(load_settings(data_dir))
    with transaction(runtime.sessions) as s:
        directory.add_unit(s, ACTOR, "B1", "Bench", SigningMode.REMOTE)
        directory.add_user(s, ACTOR, username="b", unit_code="B1", full_name="B", national_id="001000000001",
                           role=Role.OTHER)
        credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("vnpt"), username="b",
                                        key_algorithm=KeyAlgorithm.RSA_2048)
    digest = hashlib.sha256(b"raw").digest()
    result = rate(lambda _: runtime.hsm.sign_digest(credential.id, digest, "sha256", SignScheme.RSA_PKCS1_V15),
                  seconds, threads=2)
    runtime.close()
    return result


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], dict]:  # type: ignore[type-arg]
    data_dir = tmp / "sandbox"
    process = subprocess.Popen([sys.executable, "-m", "broker.cli", "sandbox", "--data-dir", str(data_dir),
                                "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    described = data_dir / "sandbox.json"
    while not described.exists():
        if process.poll() is not None:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.3)
    return process, json.loads(described.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        raw2 = raw_rate(tmp, args.seconds)
        process, info = start_sandbox(tmp)
        try:
            credential = next(c["credential_id"] for c in info["credentials"] if c["key_algo"] == "rsa-2048")
            counts = [0, 0]
            stop = time.perf_counter() + args.seconds

            def batches(n: int) -> None:
                client = KysoClient(info["base_url"], access_token=info["access_token"])
                i = 0
                while time.perf_counter() < stop:
                    hashes = [hashlib.sha256(f"{n}-{i}-{k}".encode()).digest() for k in range(50)]
                    auth = client.authorize(credential, hashes)
                    counts[n] += len(client.sign_hash(credential, auth.sad, hashes, RSA_SHA256))
                    i += 1

            start = time.perf_counter()
            threads = [threading.Thread(target=batches, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            throughput = sum(counts) / (time.perf_counter() - start)

            latencies: list[float] = []
            lock = threading.Lock()

            def single(n: int) -> None:
                client = KysoClient(info["base_url"], access_token=info["access_token"])
                for i in range(25):
                    digest = hashlib.sha256(f"lat-{n}-{i}".encode()).digest()
                    auth = client.authorize(credential, [digest])
                    t0 = time.perf_counter()
                    client.sign_hash(credential, auth.sad, [digest], RSA_SHA256)
                    with lock:
                        latencies.append(time.perf_counter() - t0)

            threads = [threading.Thread(target=single, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(f"raw HSM RSA-2048, 2 threads:                       {raw2:8.1f} sig/s")
    print(f"CSC authorize+signHash, batches of 50, 2 clients: {throughput:8.1f} sig/s  = {throughput / raw2:.3f} × raw")
    print(f"single-hash signHash latency (4 clients):          p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} calls)")
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
