"""A treasury's peak day, replayed: payment documents signed twice, the chief accountant then the
account holder, CAdES B-B, through the REST API of ``kyso serve`` on PostgreSQL.

Each client thread loops: a request of ``--batch`` documents for the chief accountant, long-polled
until signed, then a request naming it (``after_request_id``) for the account holder, long-polled
until signed. Simulated phones in this process approve (two per signer). Measured: the wall time and
the server's process tree CPU per document (both signatures). A peak day is 200,000 documents;
the count is a parameter (``--documents``): a slice of it extrapolates linearly to the day (the work
per document does not grow with the count: each request touches its own rows).

Database: ``KYSO_BENCH_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/kyso_bench``),
created if missing and emptied. Usage: ``python -m bench.peak_day [--documents N] [--batch N]
[--clients N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.server_cpu import bench_env, prepare, server_pid, tree_cpu
from bench.workers import DEFAULT_URL, Phones, fresh_database, serving, wait_signed
from broker import approvals, clients, credentials, directory
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Role, SigningMode
from broker.runtime import Runtime
from broker.settings import load_settings
from hsm import KeyAlgorithm
from kyso.operations import setup
from kyso_device.client import enroll

PEAK_DAY = 200_000
ACTOR = Actor("bench", "peak-day")
UNIT = "KB-001"
SIGNERS = (("kb.ketoan", "Nguyễn Thị Kế Toán", "001190000301", Role.CHIEF_ACCOUNTANT),
           ("kb.chutk", "Trần Văn Chủ", "001190000302", Role.ACCOUNT_HOLDER))
PHONES_PER_SIGNER = 2


def prepare_data_dir(data_dir: Path) -> dict[str, Any]:
    """The unit, its two signers with RSA-2048 keys, a relying system's client, phone activation codes."""
    setup.init_data_dir(load_settings(data_dir), ACTOR, sandbox=True)
    runtime = Runtime(load_settings(data_dir))
    try:
        with transaction(runtime.sessions) as s:
            directory.add_unit(s, ACTOR, UNIT, "Đơn vị dự toán Kho bạc", SigningMode.REMOTE)
            for username, full_name, national_id, role in SIGNERS:
                directory.add_user(s, ACTOR, username=username, unit_code=UNIT, full_name=full_name,
                                   national_id=national_id, role=role)
            clients.add_relying_system(s, ACTOR, "treasury", [UNIT])
            client, secret = clients.add_client(s, ACTOR, "treasury")
            client_id = client.client_id
        ids = []
        for username, *_ in SIGNERS:
            with transaction(runtime.sessions) as s:
                ids.append(credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("viettel"), username=username,
                                              key_algorithm=KeyAlgorithm.RSA_2048).id)
        with transaction(runtime.sessions) as s:
            codes = [approvals.issue_activation_code(s, runtime.settings, ACTOR, username)[0]
                     for username, *_ in SIGNERS for _ in range(PHONES_PER_SIGNER)]
    finally:
        runtime.close()
    return {"client_id": client_id, "client_secret": secret, "credentials": ids, "activation_codes": codes}


def order(n: int) -> str:
    """A payment order (ủy nhiệm chi) of about 2 kB, base64."""
    xml = (f"<UyNhiemChi><So>UNC-2026-{n:06d}</So><SoTien>{1_000_000 + n}</SoTien>"
           f"<NguoiNhan>Công ty TNHH Cung ứng {n % 997}</NguoiNhan>" + "<DienGiai>" + "x" * 1800 +
           "</DienGiai></UyNhiemChi>")
    return base64.b64encode(xml.encode()).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=PEAK_DAY, help=f"documents to sign (a peak day: {PEAK_DAY})")
    parser.add_argument("--batch", type=int, default=10, help="documents per request")
    parser.add_argument("--clients", type=int, default=4, help="client threads (each: one document batch at a time)")
    parser.add_argument("--workers", type=int, default=2, help="kyso serve workers")
    # ``DATA_DIR --prepare``: make the data dir, in a process of its own (one token store per process)
    parser.add_argument("data_dir", type=Path, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(json.dumps(prepare_data_dir(args.data_dir)))
        return
    url = os.environ.get("KYSO_BENCH_DATABASE_URL", DEFAULT_URL)
    fresh_database(url)
    env = bench_env(url)
    batches = max(1, -(-args.documents // args.batch))
    with tempfile.TemporaryDirectory(prefix="kyso-peak-") as name:
        tmp = Path(name)
        data_dir = tmp / "data"
        info = prepare(data_dir, env, module="bench.peak_day", extra=("--prepare",))
        with serving(data_dir, env, args.workers, tmp / "serve.log") as base_url:
            states = [enroll(base_url, code, f"peak-phone-{n}") for n, code in enumerate(info["activation_codes"])]
            phones = Phones(states, base_url)
            phones.start()
            token = httpx.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"},
                               auth=(info["client_id"], info["client_secret"])).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            chief, holder = info["credentials"]
            lock = threading.Lock()
            todo = iter(range(batches))
            done = [0]
            errors: list[BaseException] = []

            def client(_: int) -> None:
                with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
                    while True:
                        with lock:
                            b = next(todo, None)
                        if b is None or errors:
                            return
                        try:
                            first = http.post("/v1/requests", json={"credential_id": chief, "format": "cades", "documents": [
                                {"content": order(b * args.batch + k), "title": f"UNC-2026-{b * args.batch + k:06d}"}
                                for k in range(args.batch)]})
                            first.raise_for_status()
                            first_id = first.json()["request_id"]
                            wait_signed(http, first_id)
                            second = http.post("/v1/requests", json={
                                "credential_id": holder, "format": "cades", "after_request_id": first_id,
                                "documents": [{"title": f"UNC-2026-{b * args.batch + k:06d}"} for k in range(args.batch)]})
                            second.raise_for_status()
                            wait_signed(http, second.json()["request_id"])
                        except BaseException as exc:  # noqa: BLE001 - re-raised below
                            errors.append(exc)
                            return
                        with lock:
                            done[0] += args.batch

            pid = server_pid(base_url)
            load_before = os.getloadavg()
            cpu0, start = tree_cpu(pid), time.perf_counter()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall, cpu = time.perf_counter() - start, tree_cpu(pid) - cpu0
            phones.stop()
            if errors:
                raise errors[0]
    documents = done[0]
    per_doc = cpu / documents
    rate = documents / wall
    print(f"peak-day replay: {documents} documents × 2 signatures (chief accountant, then account holder), CAdES B-B, "
          f"requests of {args.batch}, {args.clients} clients, kyso serve --workers {args.workers} on PostgreSQL")
    print(f"  wall {wall:.1f} s = {rate:.1f} documents/s ({2 * rate:.1f} signatures/s); server CPU "
          f"{per_doc * 1000:.2f} ms per document ({per_doc * 500:.2f} ms per signature); cores {os.cpu_count()}, "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if documents != PEAK_DAY:
        print(f"  extrapolated to {PEAK_DAY:,} documents (linear, from this slice): wall {PEAK_DAY / rate / 3600:.2f} h, "
              f"server CPU {PEAK_DAY * per_doc / 3600:.2f} h")


if __name__ == "__main__":
    main()
