"""``kyso serve`` stops within seconds of SIGTERM while phones long-poll: their waits are woken and
answered (an empty list), not waited out; requests still running after the grace period are cut."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from kyso.sandbox import free_port
from kyso_device.client import DeviceClient, enroll
from tests.ops.test_workers import kyso, wait_ready
from tests.support import REPO, fresh_schema

PHONES = 4
STOP_SECONDS = 6.0
"""From SIGTERM to the process gone: the grace period (3 s) and the clean-up, with room for a slow machine."""


def serve_and_stop(tmp_path: Path, env: dict[str, str], workers: int) -> None:
    data_dir = tmp_path / "data"
    prepared = subprocess.run([sys.executable, "-m", "tests.ops.prepare_data_dir", str(data_dir),
                               "--phones", str(PHONES)], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=180, check=False)
    assert prepared.returncode == 0, prepared.stderr
    info = json.loads(prepared.stdout.strip().splitlines()[-1])
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(kyso("--data-dir", str(data_dir), "serve", "--port", str(port),
                                        "--workers", str(workers)),
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(base_url, process, time.monotonic() + 90)
        phones = [DeviceClient(enroll(base_url, code, f"phone-{i}"), httpx.Client(base_url=base_url, timeout=120))
                  for i, code in enumerate(info["activation_codes"])]
        answers: list[object] = []
        started = threading.Barrier(PHONES + 1)

        def long_poll(phone: DeviceClient) -> None:
            started.wait()
            try:
                answers.append(phone.pending(wait=60))  # the server caps it at its long-poll limit (25 s)
            except Exception as exc:  # noqa: BLE001 - recorded: the assertion below names it
                answers.append(exc)

        threads = [threading.Thread(target=long_poll, args=(phone,), daemon=True) for phone in phones]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(1.5)  # every poll is waiting in the server now
        assert not answers

        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        stopped = time.monotonic() - sent
        for thread in threads:
            thread.join(timeout=10)
        output = log_path.read_text(errors="replace")
        assert stopped < STOP_SECONDS, f"stopped after {stopped:.1f} s\n{output[-3000:]}"
        assert process.returncode == 0, output[-3000:]
        assert answers == [[]] * PHONES, answers  # each poll answered: nothing pending
        assert not (data_dir / "server.json").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_sigterm_stops_a_server_with_long_polling_phones(tmp_path: Path) -> None:
    env = {**os.environ}
    env.pop("KYSO_DATA_DIR", None)
    env.pop("KYSO_DATABASE_URL", None)
    serve_and_stop(tmp_path, env, workers=1)


def test_sigterm_stops_several_workers_with_long_polling_phones(tmp_path: Path) -> None:
    url = os.environ.get("KYSO_TEST_DATABASE_URL")
    if not url:
        pytest.skip("KYSO_TEST_DATABASE_URL not set (several workers need PostgreSQL)")
    fresh_schema(url)
    env = {**os.environ, "KYSO_DATABASE_URL": url}
    env.pop("KYSO_DATA_DIR", None)
    serve_and_stop(tmp_path, env, workers=2)
