"""Run in a subprocess by ``test_large_pdf``: sign ``WORK_DIR/large.pdf`` the way the worker does
(prepare into a file, sign the digest, finish in place) and print, as JSON, the growth of peak
RSS (VmHWM) over the same process warmed up by signing the small payment order.

Usage: ``python -m tests.signer.large_pdf_memory WORK_DIR``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from bench.scratch import scratch_credential
from broker import credentials
from demo.documents import CHIEF_ACCOUNTANT_FIELD
from signer import pades
from signer.hsm_signer import HsmKeySigner


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_large_pdf(small: Path, target: Path, size: int) -> None:
    """The payment order plus an incompressible stream of ``size`` bytes (made in the test's process)."""
    with small.open("rb") as pdf_in:
        writer = IncrementalPdfFileWriter(pdf_in, strict=False)
        writer.root["/KysoFiller"] = writer.add_object(generic.StreamObject(stream_data=os.urandom(size)))
        writer.update_root()
        with target.open("wb") as out:
            writer.write(out)


def sign(key: HsmKeySigner, source: Path, target: Path) -> None:
    """As the worker does: prepare into a file, sign the digest, finish in place."""
    prepared = pades.prepare(key.certificate, key.chain, key.scheme, key.signature_size(), source, target,
                             pades.PadesOptions(CHIEF_ACCOUNTANT_FIELD, signer_name="Nguyễn Thị Kế Toán"))
    signature = key.sign(prepared.dtbs_digest, prepared.hash_name)
    pades.finish(prepared, signature, key.certificate, key.chain, key.scheme)


def main() -> None:
    work = Path(sys.argv[1])
    small, large = work / "small.pdf", work / "large.pdf"
    runtime, credential = scratch_credential(work / "data")
    key = credentials.key_signer(runtime.hsm, credential)
    sign(key, small, work / "small-signed.pdf")  # warm: every module and the font loaded
    idle = peak_rss()
    sign(key, large, work / "large-signed.pdf")
    grown = peak_rss() - idle
    runtime.close()
    print(json.dumps({"size": large.stat().st_size, "signed_size": (work / "large-signed.pdf").stat().st_size,
                      "peak_rss_growth": grown}))


if __name__ == "__main__":
    main()
