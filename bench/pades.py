"""Single-document PAdES B-B requests through kyso's REST API against plain pyHanko in process:
the ratio of the two rates, measured in the same run, and kyso's p50/p99 at
half its own maximum.

pyHanko: ``PdfSigner`` over the same 1-page payment order, field, stamp, placeholder size and HSM
key, one thread (one process: pyHanko's work holds the GIL). kyso: ``kyso sandbox`` in a subprocess,
client threads each uploading the PDF (``PUT /v1/documents``), creating the request, long-polling
until the worker signed it (the simulated phone's approval included) and downloading the result.
Visible (the order's ``KeToanTruong`` field, a stamp in DejaVu Sans) and invisible (a new field)
are measured apart: the stamp's font work is most of a visible signature's cost.
Usage: ``python -m bench.pades [--seconds N] [--clients N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore

from bench.csc import percentile, run_threads, start_sandbox
from bench.scratch import scratch_credential
from bench.signing import rate
from broker import credentials
from demo.documents import CHIEF_ACCOUNTANT_FIELD, write_payment_order_pdf
from kyso_client import KysoClient
from signer import stamp
from signer.algorithms import signature_algorithm
from signer.keysigner import KeySigner

INVISIBLE_FIELD = "Signature1"  # not in the PDF: made invisible


class _PyhankoHsmSigner(signers.Signer):
    """pyHanko's own signing pipeline over the HSM key, as pyHanko's PKCS#11 signer does it."""

    def __init__(self, key: KeySigner) -> None:
        self._key = key
        super().__init__(signing_cert=key.certificate, cert_registry=SimpleCertificateStore.from_certs(key.chain),
                         signature_mechanism=signature_algorithm(key.scheme, "sha256", None), embed_roots=False)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self._key.signature_size())
        return self._key.sign(hashlib.new(digest_algorithm, data).digest(), digest_algorithm)


def pyhanko_rates(key: KeySigner, pdf: Path, out: Path, seconds: float) -> dict[str, float]:
    """Signatures/s of plain pyHanko in this process, per field (visible, invisible)."""
    signer = _PyhankoHsmSigner(key)
    # The placeholder kyso reserves, so that both skip pyHanko's dry-run size estimate alike.
    reserved = 2 * (4096 + key.signature_size() + sum(len(c.dump()) for c in (key.certificate, *key.chain)))
    rates = {}
    for field in (CHIEF_ACCOUNTANT_FIELD, INVISIBLE_FIELD):
        meta = signers.PdfSignatureMetadata(field_name=field, md_algorithm="sha256",
                                            subfilter=SigSeedSubFilter.PADES, name="Nguyễn Thị Kế Toán")
        pdf_signer = signers.PdfSigner(meta, signer=signer, stamp_style=stamp.stamp_style(stamp.DEFAULT_STAMP))

        def sign_once(_: int) -> None:
            with pdf.open("rb") as pdf_in, out.open("wb") as pdf_out:
                asyncio.run(pdf_signer.async_sign_pdf(IncrementalPdfFileWriter(pdf_in, strict=False),
                                                      output=pdf_out, bytes_reserved=reserved))

        sign_once(0)  # warm: fonts, caches
        rates[field] = rate(sign_once, seconds)
    return rates


def pyhanko_rate(tmp: Path, pdf: Path, seconds: float) -> dict[str, float]:
    runtime, credential = scratch_credential(tmp / "pyhanko")
    try:
        return pyhanko_rates(credentials.key_signer(runtime.hsm, credential), pdf, tmp / "pyhanko-out.pdf", seconds)
    finally:
        runtime.close()


class _Requests:
    """One client's REST PAdES round trip: upload, create, wait until signed, download."""

    def __init__(self, info: dict[str, Any], credential: str, pdf: Path, out: Path) -> None:
        self.client = KysoClient(info["base_url"], access_token=info["access_token"])
        self.credential, self.pdf, self.out = credential, pdf, out

    def sign(self, field: str) -> None:
        document_id = self.client.upload_document(self.pdf)
        created = self.client.create_request({"credential_id": self.credential, "format": "pades", "documents": [
            {"title": "Ủy nhiệm chi UNC-2026-000123", "document_id": document_id, "field": field}]})
        done = self.client.wait(created["request_id"])
        if done["state"] != "signed":
            raise RuntimeError(f"request {created['request_id']} ended {done['state']}: {done.get('failure_reason')}")
        self.client.download(done["documents"][0], self.out)


def kyso_rate(info: dict[str, Any], credential: str, pdf: Path, tmp: Path, field: str, seconds: float,
              clients: int) -> float:
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(n: int) -> None:
        session = _Requests(info, credential, pdf, tmp / f"kyso-out-{n}.pdf")
        while time.perf_counter() < stop:
            session.sign(field)
            counts[n] += 1

    elapsed = run_threads(clients, loop)
    return sum(counts) / elapsed


def kyso_latencies(info: dict[str, Any], credential: str, pdf: Path, tmp: Path, field: str, offered: float,
                   seconds: float, clients: int) -> list[float]:
    """Open loop at ``offered`` requests/s: each request timed from its scheduled start."""
    latencies: list[float] = []
    lock = threading.Lock()
    total = max(1, int(offered * seconds))
    next_call = iter(range(total))
    start = time.perf_counter() + 0.5

    def loop(n: int) -> None:
        session = _Requests(info, credential, pdf, tmp / f"kyso-lat-{n}.pdf")
        while True:
            with lock:
                i = next(next_call, None)
            if i is None:
                return
            due = start + i / offered
            time.sleep(max(0.0, due - time.perf_counter()))
            session.sign(field)
            with lock:
                latencies.append(time.perf_counter() - due)

    run_threads(clients, loop)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--clients", type=int, default=4, help="client threads sending REST requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kyso-bench-") as name:
        tmp = Path(name)
        pdf = tmp / "order.pdf"
        write_payment_order_pdf(pdf)
        baseline = pyhanko_rate(tmp, pdf, args.seconds / 2)
        process, info = start_sandbox(tmp)
        results = []
        try:
            credential = next(c["credential_id"] for c in info["credentials"] if c["key_algo"] == "rsa-2048")
            _Requests(info, credential, pdf, tmp / "warm.pdf").sign(CHIEF_ACCOUNTANT_FIELD)
            for field, label in ((CHIEF_ACCOUNTANT_FIELD, "visible stamp"), (INVISIBLE_FIELD, "invisible")):
                got = kyso_rate(info, credential, pdf, tmp, field, args.seconds, args.clients)
                latencies = kyso_latencies(info, credential, pdf, tmp, field, got / 2, args.seconds, args.clients)
                results.append((label, baseline[field], got, latencies))
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(f"PAdES B-B, 1-page PDF; kyso: REST requests from {args.clients} clients, approval included")
    for label, plain, got, latencies in results:
        print(f"{label:>13}: pyHanko in process {plain:6.1f}/s, kyso {got:6.1f}/s = {got / plain:.3f} × pyHanko "
              f"(target ≥ 0.70); at {got / 2:.1f}/s: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
