"""Signing rates in one run, as ratios to the raw HSM rate measured in the same run.

Absolute rates differ several times between machines of one kind; compare the ratios.
Usage: ``make bench`` (or ``python -m bench.signing [--seconds N]``).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.scratch import scratch_credential
from broker import credentials
from demo.documents import write_payment_order_pdf
from hsm import SignatureScheme
from signer import cades, pades


def rate(fn: Callable[[int], None], seconds: float, threads: int = 1) -> float:
    """Operations per second of ``fn`` run by ``threads`` threads for about ``seconds``."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(n: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            fn(i)
            i += 1
        done[n] = i

    start = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        runtime, credential = scratch_credential(data_dir)
        key = credentials.key_signer(runtime.hsm, credential)
        digest = hashlib.sha256(b"bench").digest()
        hsm = runtime.hsm

        def raw(_: int) -> None:
            hsm.sign_digest(credential.id, digest, "sha256", SignatureScheme.RSA_PKCS1_V15)

        content = b"<PaymentOrder>" + b"x" * 2000 + b"</PaymentOrder>"

        def cades_bb(_: int) -> None:
            cades.sign(key, content=content)

        pdf_in = Path(tmp) / "order.pdf"
        write_payment_order_pdf(pdf_in)
        options = pades.PadesOptions("KeToanTruong")

        def pades_bb(i: int) -> None:
            out = Path(tmp) / f"out-{threading.get_ident()}.pdf"
            pades.sign(key, pdf_in, out, options)

        raw1 = rate(raw, args.seconds)
        raw2 = rate(raw, args.seconds, threads=2)
        results = [
            ("raw HSM RSA-2048 PKCS#1 v1.5, 1 thread", raw1),
            ("raw HSM RSA-2048 PKCS#1 v1.5, 2 threads", raw2),
            ("CAdES B-B detached, in process, 1 thread", rate(cades_bb, args.seconds)),
            ("CAdES B-B detached, in process, 2 threads", rate(cades_bb, args.seconds, threads=2)),
            ("PAdES B-B (1-page PDF), in process, 1 thread", rate(pades_bb, args.seconds)),
        ]
        width = max(len(name) for name, _ in results)
        print(f"{'measurement':<{width}}  {'sig/s':>9}  {'÷ raw 1 thread':>14}  {'÷ raw 2 threads':>15}")
        for name, value in results:
            print(f"{name:<{width}}  {value:9.1f}  {value / raw1:14.3f}  {value / raw2:15.3f}")
        runtime.close()


if __name__ == "__main__":
    main()
