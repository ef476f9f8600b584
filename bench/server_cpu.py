"""What the server spends: its process tree's CPU time per operation, against the same work in process.

Throughput on a small machine shared by the benchmark's own clients and phones measures them too;
the CPU seconds the server's processes (and their children) spend per operation do not. Measured in
one run:

- CSC: per signature, ``credentials/authorize`` + the signer's approval + ``signatures/signHash`` in
  batches of 50, against the raw HSM's CPU per signature (RSA-2048 CKM_RSA_PKCS, runs of 50 digests
  in one session, in this process: SoftHSM signs in its caller's process).
- PAdES: per single-document request (upload, create, approval, finish, long poll, download; an
  invisible signature), against plain pyHanko's CPU per document in this process over the same HSM
  key, loaded once (``bench.pades``'s signer: no key parsing per signature).
- CAdES: per document, in REST requests of 10 (B-B, detached), against ``signer.cades`` in process.

Servers: ``kyso sandbox`` (SQLite; its simulated phones approve inside the server), ``kyso serve`` on
SQLite (1 worker) and on PostgreSQL (1 and 2 workers), approved by simulated phones in this process
(their HTTP calls are server work, their own signing is not). PostgreSQL: ``KYSO_BENCH_DATABASE_URL``,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/kyso_bench``, created if missing, emptied.
Throughput is printed too, as a ratio to the raw HSM rate of one thread (and pyHanko's rate).
Usage: ``python -m bench.server_cpu [--seconds N] [--clients N] [--servers sandbox,sqlite,pg1,pg2]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.csc import start_sandbox
from bench.pades import INVISIBLE_FIELD, _PyhankoHsmSigner
from bench.scratch import scratch_credential
from bench.workers import (
    BATCH,
    DEFAULT_URL,
    DOCUMENTS,
    PHONES,
    REPO,
    Operation,
    Phones,
    cades_request,
    csc_batch,
    fresh_database,
    pades_request,
    run_clients,
    serving,
)
from broker import credentials
from demo.documents import write_payment_order_pdf
from hsm import SignatureScheme
from kyso_device.client import DeviceState, enroll
from signer import cades

SERVERS = ("sandbox", "sqlite", "pg1", "pg2")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, the reaped ones included."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass(frozen=True)
class Measured:
    rate: float
    """operations per wall second"""
    cpu: float
    """CPU seconds per operation"""
    count: int


def in_process(fn: Callable[[int], int], seconds: float) -> Measured:
    """``fn`` in a loop on this thread for about ``seconds``: its rate and this thread's CPU per unit
    (the work runs on it, SoftHSM's signing included; other threads of this process are not counted)."""
    fn(0)  # warm
    units, i = 0, 0
    cpu0, start = time.thread_time(), time.perf_counter()
    stop = start + seconds
    while time.perf_counter() < stop:
        units += fn(i)
        i += 1
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu0
    return Measured(units / wall, cpu / units, units)


def in_threads(fn: Callable[[int], int], seconds: float, threads: int) -> Measured:
    """``fn`` in a loop on ``threads`` threads at once for about ``seconds``: the rate and this
    process's CPU per unit (the same concurrency as ``threads`` clients put on the server)."""
    fn(0)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(n: int) -> None:
        while time.perf_counter() < stop:
            counts[n] += fn(n)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    cpu0, start = time.process_time(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return Measured(sum(counts) / wall, cpu / max(sum(counts), 1), sum(counts))


def mean_of(first: Measured, second: Measured) -> Measured:
    return Measured((first.rate + second.rate) / 2, (first.cpu + second.cpu) / 2, first.count + second.count)


@contextmanager
def baselines(tmp: Path, pdf: Path, clients: int) -> Iterator[Callable[[float], dict[str, Measured]]]:
    """A measurer of the raw HSM (runs of 50 on one thread and on ``clients`` threads at once; one call
    per signature), pyHanko PAdES and CAdES, in this process, that can be called more than once (one
    token store per process: one runtime)."""
    # A session per thread, and too few to split a batch over (with 2 threads): each run signs in one.
    runtime, credential = scratch_credential(tmp / "raw", hsm_max_sessions=clients + 1)
    try:
        digests = [hashlib.sha256(b"raw %d" % i).digest() for i in range(BATCH)]
        hsm = runtime.hsm

        def run(_: int) -> int:
            hsm.sign_digests(credential.id, digests, "sha256", SignatureScheme.RSA_PKCS1_V15)
            return BATCH

        def one(i: int) -> int:
            hsm.sign_digest(credential.id, digests[i % BATCH], "sha256", SignatureScheme.RSA_PKCS1_V15)
            return 1

        key = credentials.key_signer(hsm, credential)
        signer = _PyhankoHsmSigner(key)  # the key loaded once, as kyso's worker holds it
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import signers
        from pyhanko.sign.fields import SigSeedSubFilter

        from signer import stamp

        reserved = 2 * (4096 + key.signature_size() + sum(len(c.dump()) for c in (key.certificate, *key.chain)))
        meta = signers.PdfSignatureMetadata(field_name=INVISIBLE_FIELD, md_algorithm="sha256",
                                            subfilter=SigSeedSubFilter.PADES, name="Nguyễn Thị Kế Toán")
        pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=stamp.stamp_style(stamp.DEFAULT_STAMP))
        out = tmp / "pyhanko-out.pdf"
        import asyncio

        def pyhanko(_: int) -> int:
            with pdf.open("rb") as pdf_in, out.open("wb") as pdf_out:
                asyncio.run(pdf_signer.async_sign_pdf(IncrementalPdfFileWriter(pdf_in, strict=False),
                                                      output=pdf_out, bytes_reserved=reserved))
            return 1

        content = b"<PaymentOrder>" + b"x" * 2000 + b"</PaymentOrder>"

        def cades_doc(_: int) -> int:
            cades.sign(key, content=content)
            return 1

        yield lambda seconds: {"raw": in_process(run, seconds), "raw_clients": in_threads(run, seconds, clients),
                               "raw1": in_process(one, seconds),
                               "pyhanko": in_process(pyhanko, seconds), "cades": in_process(cades_doc, seconds)}
    finally:
        runtime.close()


def server_cpu(pid: int, operation: Operation, url: str, headers: dict[str, str], credential_id: str,
               clients: int, seconds: float, label: str) -> Measured:
    """``clients`` threads run ``operation`` for about ``seconds``; the server tree's CPU per unit."""
    units, wall, cpu = run_clients(operation, url, headers, credential_id, clients, seconds, label,
                                   measure=functools.partial(tree_cpu, pid))
    return Measured(units / wall, cpu / max(units, 1), units)


def operations(pdf: bytes) -> list[tuple[str, Operation, str]]:
    return [("csc", csc_batch, f"CSC authorize+approval+signHash, batches of {BATCH}: per signature"),
            ("cades", cades_request, f"CAdES B-B REST, requests of {DOCUMENTS}: per document"),
            ("pades", functools.partial(pades_request, pdf), "PAdES B-B REST, 1 doc invisible: per request")]


def bench_env(database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "KYSO_LOG_FORMAT": "text",
           # many requests of one relying system for one signer: measure the server, not the caps
           "KYSO_RATE_LIMIT_PER_MINUTE": "1000000", "KYSO_MAX_PENDING_PER_USER": "1000"}
    for variable in ("KYSO_DATA_DIR", "PROMETHEUS_MULTIPROC_DIR", "KYSO_DATABASE_URL"):
        env.pop(variable, None)
    if database_url:
        env["KYSO_DATABASE_URL"] = database_url
    return env


def prepare(data_dir: Path, env: dict[str, str], module: str = "tests.ops.prepare_data_dir",
            extra: tuple[str, ...] = ("--key", "rsa-2048", "--phones", str(PHONES))) -> dict[str, Any]:
    """A data dir made in its own process (one token store per process); its JSON description."""
    done = subprocess.run([sys.executable, "-m", module, str(data_dir), *extra], cwd=REPO, env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def server_pid(url: str) -> int:
    """The pid of this process's ``kyso serve`` child listening at ``url`` (its workers are its children)."""
    port = url.rsplit(":", 1)[1]
    for child in psutil.Process().children():
        command = child.cmdline()
        if "serve" in command and "--port" in command and command[command.index("--port") + 1] == port:
            return child.pid
    raise SystemExit(f"no kyso serve child at {url}")


@contextmanager
def served(kind: str, tmp: Path, pg_url: str) -> Iterator[tuple[int, str, dict[str, str], str, Phones | None]]:
    """A server of ``kind``: its pid, URL, auth headers, credential id, and this process's phones (or None)."""
    if kind == "sandbox":
        process, info = start_sandbox(tmp)
        try:
            credential = next(c["credential_id"] for c in info["credentials"] if c["key_algo"] == "rsa-2048")
            yield process.pid, info["base_url"], {"Authorization": f"Bearer {info['access_token']}"}, credential, None
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        return
    workers = 2 if kind == "pg2" else 1
    database = None if kind == "sqlite" else pg_url
    env = bench_env(database)
    data_dir = tmp / f"data-{kind}"
    if kind == "pg2":  # pg1's data dir and database, served by 2 workers
        data_dir = tmp / "data-pg1"
    if not data_dir.exists():
        if database:
            fresh_database(database)
        info = prepare(data_dir, env)
        (data_dir / "bench-info.json").write_text(json.dumps(info))
    info = json.loads((data_dir / "bench-info.json").read_text())
    with serving(data_dir, env, workers, tmp / f"serve-{kind}.log") as url:
        if str(data_dir) not in _phones:  # enrolled once per database
            _phones[str(data_dir)] = [enroll(url, code, f"bench-phone-{n}")
                                      for n, code in enumerate(info["activation_codes"])]
        phones = Phones(_phones[str(data_dir)], url)
        phones.start()
        try:
            token = httpx.post(f"{url}/oauth2/token", data={"grant_type": "client_credentials"},
                               auth=(info["client_id"], info["client_secret"])).json()["access_token"]
            yield server_pid(url), url, {"Authorization": f"Bearer {token}"}, info["credential_id"], phones
        finally:
            phones.stop()


_phones: dict[str, list[DeviceState]] = {}


def relative(measured: Measured, baseline: Measured, other: Measured, other_baseline: Measured) -> float:
    """Server CPU per operation against another server's, each as a ratio to its own in-process
    baseline: the machine's drift between the two measurements cancels."""
    return (measured.cpu / baseline.cpu) / (other.cpu / other_baseline.cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--clients", type=int, default=2, help="client threads against the server")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    parser.add_argument("--only", default="csc,cades,pades", help="operations: comma-separated, of csc, cades, pades")
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    only = set(args.only.split(","))
    pg_url = os.environ.get("KYSO_BENCH_DATABASE_URL", DEFAULT_URL)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        pdf = tmp / "order.pdf"
        write_payment_order_pdf(pdf)
        with baselines(tmp, pdf, args.clients) as measure:
            # Measured again around each server: this machine's speed drifts over minutes, so each
            # server's ratios use the mean of the measurements just before and just after it.
            points = [measure(min(args.seconds, 5.0))]
            results: dict[tuple[str, str], Measured] = {}
            local: dict[str, dict[str, Measured]] = {}
            for kind in servers:
                with served(kind, tmp, pg_url) as (pid, url, headers, credential, _):
                    for op, operation, _title in operations(pdf.read_bytes()):
                        if op in only:
                            results[(kind, op)] = server_cpu(pid, operation, url, headers, credential, args.clients,
                                                             args.seconds, f"{op}-{kind}")
                points.append(measure(min(args.seconds, 5.0)))
                local[kind] = {name: mean_of(points[-2][name], points[-1][name]) for name in points[-1]}
    first, last = points[0], points[-1]
    base = {name: mean_of(first[name], last[name]) for name in first}
    raw, raw1, pyhanko, cades_in = base["raw"], base["raw1"], base["pyhanko"], base["cades"]
    drift = max(max(p[k].cpu for p in points) / min(p[k].cpu for p in points) - 1 for k in base)
    print(f"in process (mean of the first and last of {len(points)} measurements; they differ by up to {drift:.0%}): "
          f"raw HSM runs of {BATCH}: {raw.rate:.1f} sig/s, {raw.cpu * 1000:.2f} ms CPU/sig; "
          f"one call per sig: {raw1.rate:.1f}/s, {raw1.cpu * 1000:.2f} ms; pyHanko PAdES invisible: "
          f"{pyhanko.rate:.1f}/s, {pyhanko.cpu * 1000:.1f} ms CPU/doc; CAdES B-B: {cades_in.rate:.1f}/s, "
          f"{cades_in.cpu * 1000:.2f} ms CPU/doc")
    against = {"csc": ("raw", "raw HSM", 1.3), "cades": ("cades", "CAdES", None), "pades": ("pyhanko", "pyHanko", 1.5)}
    print(f"server process tree, {args.clients} clients, {args.seconds:g} s each; cores {os.cpu_count()}, "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; ratios against the "
          "in-process measurements just before and after each server")
    print(f"{'server':<8} {'operation':<6} {'ops':>6} {'ops/s':>8} {'÷ raw':>7} {'CPU ms/op':>10} "
          f"{'÷ baseline':>16} {'÷ SQLite':>9} {'÷ pg1':>6}")
    for (kind, op), m in results.items():
        name, label, target = against[op]
        baseline, near = local[kind][name], local[kind]
        sqlite_kind = "sqlite" if ("sqlite", op) in results else "sandbox"
        sqlite = results.get((sqlite_kind, op))
        versus_sqlite = relative(m, baseline, sqlite, local[sqlite_kind][name]) if sqlite else float("nan")
        one_worker = results.get(("pg1", op)) if kind == "pg2" else None
        versus_pg1 = f"{relative(m, baseline, one_worker, local['pg1'][name]):6.2f}" if one_worker else ""
        ratio_rate = m.rate / near["raw1"].rate if op != "pades" else m.rate / near["pyhanko"].rate
        versus = f"{m.cpu / baseline.cpu:6.2f}× {label}" + (f" (≤{target})" if target else "")
        print(f"{kind:<8} {op:<6} {m.count:6d} {m.rate:8.1f} {ratio_rate:7.3f} {m.cpu * 1000:10.2f} "
              f"{versus:>16} {versus_sqlite:9.2f} {versus_pg1:>6}")
    concurrent = base["raw_clients"]
    cscs = [(kind, m.cpu / local[kind]["raw_clients"].cpu) for (kind, op), m in results.items() if op == "csc"]
    if cscs:
        print(f"raw HSM on {args.clients} threads at once (the clients' concurrency): {concurrent.rate:.1f} sig/s, "
              f"{concurrent.cpu * 1000:.2f} ms CPU/sig ({concurrent.cpu / raw.cpu:.2f}× one thread's); CSC server CPU "
              "÷ it: " + ", ".join(f"{kind} {ratio:.2f}" for kind, ratio in cscs))
    print("÷ raw: rate ÷ raw HSM one-call rate (PAdES: ÷ pyHanko's rate); ÷ SQLite: the ÷ baseline ratio ÷ the "
          "`sqlite` server's (else the sandbox's); ÷ pg1: 2 workers' ÷ baseline ratio ÷ 1 worker's; "
          "targets: PostgreSQL ≤ 1.2× SQLite, pg2 ≤ pg1")


if __name__ == "__main__":
    main()
