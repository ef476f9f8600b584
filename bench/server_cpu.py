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
Each operation runs in rounds between in-process measurements of its baseline (this machine's speed
drifts by tens of per cent within a minute); each ratio is the median of the rounds'. Throughput is
printed too, as a ratio to the baseline's rate on one thread; for CSC, the server's CPU is also
compared with the raw HSM signing on as many threads at once as there are clients.
Usage: ``python -m bench.server_cpu [--seconds N] [--rounds N] [--clients N] [--servers sandbox,sqlite,pg1,pg2]``.
"""

from __future__ import annotations

import argparse
import functools
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
from collections.abc import Callable, Iterator, Sequence
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
def baselines(tmp: Path, pdf: Path, clients: int) -> Iterator[Callable[[Sequence[str], float], dict[str, Measured]]]:
    """A measurer of the raw HSM (runs of 50 on one thread and on ``clients`` threads at once),
    pyHanko PAdES and CAdES, in this process, that can be called more than once (one
    token store per process: one runtime)."""
    # A session per thread, and too few to split a batch over (with 2 threads): each run signs in one.
    runtime, credential = scratch_credential(tmp / "raw", hsm_max_sessions=clients + 1)
    try:
        digests = [hashlib.sha256(b"raw %d" % i).digest() for i in range(BATCH)]
        hsm = runtime.hsm

        def run(_: int) -> int:
            hsm.sign_digests(credential.id, digests, "sha256", SignatureScheme.RSA_PKCS1_V15)
            return BATCH

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

        measurers: dict[str, Callable[[float], Measured]] = {
            "raw": functools.partial(in_process, run), "raw_clients": lambda seconds: in_threads(run, seconds, clients),
            "pyhanko": functools.partial(in_process, pyhanko),
            "cades": functools.partial(in_process, cades_doc)}
        yield lambda names, seconds: {name: measurers[name](seconds) for name in names}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--clients", type=int, default=2, help="client threads against the server")
    parser.add_argument("--rounds", type=int, default=3, help="server measurements per operation, between baselines")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    parser.add_argument("--only", default="csc,cades,pades", help="operations: comma-separated, of csc, cades, pades")
    args = parser.parse_args()
    servers = [s for s in args.servers.split(",") if s]
    only = set(args.only.split(","))
    pg_url = os.environ.get("KYSO_BENCH_DATABASE_URL", DEFAULT_URL)
    load_before = os.getloadavg()
    results: dict[tuple[str, str], Rounds] = {}
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        pdf = tmp / "order.pdf"
        write_payment_order_pdf(pdf)
        with baselines(tmp, pdf, args.clients) as measure:
            for kind in servers:
                with served(kind, tmp, pg_url) as (pid, url, headers, credential, _):
                    for op, operation, _title in operations(pdf.read_bytes()):
                        if op in only:
                            results[(kind, op)] = alternate(
                                functools.partial(measure, BASELINES[op]),
                                functools.partial(server_cpu, pid, operation, url, headers, credential, args.clients,
                                                  label=f"{op}-{kind}"),
                                args.seconds, args.rounds)
    report(results, args, load_before)


BASELINES = {"csc": ("raw", "raw_clients"), "cades": ("cades",), "pades": ("pyhanko",)}
"""The in-process measurements each operation is compared with; the first is its target's."""


@dataclass(frozen=True)
class Rounds:
    """One operation on one server, measured in rounds between in-process baselines."""

    server: Measured
    """all rounds together"""
    baseline: dict[str, Measured]
    """each baseline, over all its measurements"""
    ratios: dict[str, list[float]]
    """per round: the server's CPU per operation ÷ each baseline's, measured just before and after it"""

    def ratio(self, name: str) -> float:
        return statistics.median(self.ratios[name])


def alternate(baseline: Callable[[float], dict[str, Measured]], server: Callable[[float], Measured],
              seconds: float, rounds: int) -> Rounds:
    """Baseline, server, baseline, server, …, baseline: this machine's speed drifts by tens of per cent
    within a minute, so each round's ratio uses the baselines right around it, and the median of the
    rounds is reported."""
    share = seconds / rounds
    points = [baseline(min(share, 2.0))]
    runs: list[Measured] = []
    for _ in range(rounds):
        runs.append(server(share))
        points.append(baseline(min(share, 2.0)))
    names = list(points[0])
    ratios = {name: [run.cpu / mean_of(before[name], after[name]).cpu
                     for run, before, after in zip(runs, points, points[1:])] for name in names}
    return Rounds(merged(runs), {name: merged([p[name] for p in points]) for name in names}, ratios)


def merged(measurements: Sequence[Measured]) -> Measured:
    count = sum(m.count for m in measurements)
    return Measured(statistics.mean(m.rate for m in measurements),
                    sum(m.cpu * m.count for m in measurements) / max(count, 1), count)


def report(results: dict[tuple[str, str], Rounds], args: argparse.Namespace, load_before: tuple[float, ...]) -> None:
    every: dict[str, list[Measured]] = {}
    for rounds in results.values():
        for name, measured in rounds.baseline.items():
            every.setdefault(name, []).append(measured)
    base = {name: merged(found) for name, found in every.items()}
    labels = {"raw": f"raw HSM runs of {BATCH}", "raw_clients": f"the same on {args.clients} threads at once",
              "pyhanko": "pyHanko PAdES invisible", "cades": "CAdES B-B"}
    print("in process (over every baseline measurement): " + "; ".join(
        f"{labels[name]}: {m.rate:.1f}/s, {m.cpu * 1000:.2f} ms CPU each" for name, m in base.items()))
    against = {"csc": ("raw", "raw HSM", 1.3), "cades": ("cades", "CAdES", None), "pades": ("pyhanko", "pyHanko", 1.5)}
    print(f"server process tree, {args.clients} clients, {args.seconds:g} s each in {args.rounds} rounds; cores "
          f"{os.cpu_count()}, load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}; each ratio "
          "is the median of the rounds' (lowest–highest), each round against the in-process measurements just "
          "before and after it")
    print(f"{'server':<8} {'operation':<6} {'ops':>6} {'ops/s':>8} {'÷ rate':>7} {'CPU ms/op':>10} "
          f"{'÷ baseline':>16} {'rounds':>11} {'÷ SQLite':>9} {'÷ pg1':>6}")
    for (kind, op), found in results.items():
        name, label, target = against[op]
        m, ratio = found.server, found.ratio(name)
        sqlite = results.get(("sqlite", op)) or results.get(("sandbox", op))
        one_worker = results.get(("pg1", op)) if kind == "pg2" else None
        versus_pg1 = f"{ratio / one_worker.ratio(name):6.2f}" if one_worker else ""
        versus = f"{ratio:6.2f}× {label}" + (f" (≤{target})" if target else "")
        spread = f"{min(found.ratios[name]):.2f}–{max(found.ratios[name]):.2f}"
        print(f"{kind:<8} {op:<6} {m.count:6d} {m.rate:8.1f} {m.rate / found.baseline[name].rate:7.3f} {m.cpu * 1000:10.2f} "
              f"{versus:>16} {spread:>11} {ratio / sqlite.ratio(name) if sqlite else float('nan'):9.2f} {versus_pg1:>6}")
    cscs = [(kind, found) for (kind, op), found in results.items() if op == "csc"]
    if cscs:
        concurrent = base["raw_clients"]
        print(f"raw HSM on {args.clients} threads at once (the clients' concurrency): {concurrent.rate:.1f} sig/s, "
              f"{concurrent.cpu * 1000:.2f} ms CPU/sig ({concurrent.cpu / base['raw'].cpu:.2f}× one thread's); CSC "
              "server CPU ÷ it: " + ", ".join(f"{kind} {found.ratio('raw_clients'):.2f}" for kind, found in cscs))
    print("÷ rate: ops/s ÷ the baseline's rate in process on one thread; ÷ SQLite: the ÷ baseline ratio ÷ the "
          "`sqlite` server's (else the sandbox's); ÷ pg1: 2 workers' ÷ baseline ratio ÷ 1 worker's; "
          "targets: PostgreSQL ≤ 1.2× SQLite, pg2 ≤ pg1")


if __name__ == "__main__":
    main()
