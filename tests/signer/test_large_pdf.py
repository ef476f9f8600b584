"""Signing a 50 MB PDF grows the process's peak RSS by less than 4× the file's
size (pyHanko reads and writes files; nothing holds the document twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from demo.documents import write_payment_order_pdf
from tests.signer.large_pdf_memory import write_large_pdf
from tests.support import REPO

SIZE = 50 * 1024 * 1024


def test_a_50_mb_pdf_signs_within_4x_its_size_of_memory(tmp_path: Path) -> None:
    write_payment_order_pdf(tmp_path / "small.pdf")
    write_large_pdf(tmp_path / "small.pdf", tmp_path / "large.pdf", SIZE)
    done = subprocess.run([sys.executable, "-m", "tests.signer.large_pdf_memory", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["size"] >= SIZE
    assert measured["size"] < measured["signed_size"] < measured["size"] + 1024 * 1024
    assert measured["peak_rss_growth"] < 4 * measured["size"], measured
    print(f"peak RSS grew {measured['peak_rss_growth'] / measured['size']:.2f}× the file size")
