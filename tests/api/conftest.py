"""Fixtures shared by the API's test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from api.app import create_app
from broker import credentials, directory
from broker.db.engine import transaction
from broker.db.migrate import upgrade
from broker.db.models import Credential, CredentialMode, Role, SigningMode, SigningRequest
from broker.runtime import Runtime
from broker.settings import Settings
from ca_adapters.emulator.server import EmulatorSet
from demo.documents import write_payment_order_pdf
from hsm import Hsm, KeyAlgorithm
from kyso.sandbox import free_port
from kyso_device.client import DeviceClient
from tests.conftest import ACTOR, Enrolled
from tests.support import (
    REPO,
    access_token,
    activation_code,
    b64,
    eventually,
    fresh_database,
    link_delegated,
    make_device,
    new_request,
    relying_system_client,
    uvicorn_thread,
)

PROVIDERS = ["viettel", "vnpt", "misa", "nacencomm"]
"""The providers that keep a signer's key (delegated credentials)."""


@pytest.fixture(scope="session")
def linked(runtime: Runtime, emulators: EmulatorSet, enrolled: Enrolled) -> dict[str, str]:
    """One delegated credential per provider for the chief accountant; VNPT's through the CLI."""
    from kyso.cli import run as kyso

    out = {p: link_delegated(runtime, emulators, p, f"0791{n}0000123") for n, p in enumerate(PROVIDERS) if p != "vnpt"}
    user = emulators.state("vnpt").add_user("079130000123", "Nguyễn Thị Lan")
    code = kyso(["--data-dir", str(runtime.settings.data_dir), "cert", "link", "--user", "lan", "--ca", "vnpt",
                 "--provider-user", user.user_id])
    assert code == 0
    with transaction(runtime.sessions) as s:
        out["vnpt"] = s.scalar(select(Credential.id).where(Credential.provider == "vnpt",
                                                           Credential.mode == CredentialMode.DELEGATED))
    return out


@pytest.fixture(scope="module")
def phone(runtime: Runtime, live_server: str, enrolled: Enrolled) -> DeviceClient:
    """lan's phone, enrolled for the module (it decides nothing unless told)."""
    return make_device(runtime, live_server, "lan")


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A payment order PDF, base64 (a request's inline document)."""
    path = tmp_path_factory.mktemp("order") / "order.pdf"
    write_payment_order_pdf(path)
    return b64(path.read_bytes())


# -- a server in its own process: its own token store, JSON logs, multi-process metrics ---------------

SERVER = r"""
import sys
from pathlib import Path
from broker.observability.multiprocess import prepare_multiprocess_dir
prepare_multiprocess_dir(Path(sys.argv[2]))  # before prometheus_client is first imported
from broker.observability.logs import configure_logging
configure_logging(default="json")
import uvicorn
from api.app import create_app
from broker.runtime import Runtime
from broker.settings import load_settings
runtime = Runtime(load_settings(Path(sys.argv[1])))
runtime.hsm
uvicorn.run(create_app(runtime), host="127.0.0.1", port=int(sys.argv[3]), log_config=None, access_log=False)
"""


@dataclass
class Served:
    url: str
    data_dir: Path
    metrics_dir: Path
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``kyso init --sandbox`` and a server on it in a process of its own (JSON logs, metrics from
    several processes), for the module."""
    base = tmp_path_factory.mktemp("ops-server")
    data_dir, metrics_dir, log = base / "data", base / "prometheus", base / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KYSO_", "PROMETHEUS_", "SOFTHSM2_"))}
    subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), "init", "--sandbox"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    (metrics_dir / "counter_999999.db").parent.mkdir(parents=True)
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")  # must be wiped at start
    env |= {"KYSO_READINESS_CACHE_SECONDS": "0.2", "KYSO_READINESS_PROBE_TIMEOUT_SECONDS": "1",
            "KYSO_LOG_FORMAT": "json"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", SERVER, str(data_dir), str(metrics_dir), str(port)],
                                   cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert eventually(up, timeout=60, interval=0.2), log.read_text()
        yield Served(url, data_dir, metrics_dir, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- hostile input: a server of its own over each kind of database ---------------------------------------


@dataclass
class Stack:
    """A server over one database, with a relying system's token, a signer, her phone and her browser session."""

    kind: str
    runtime: Runtime
    url: str
    token: str
    credential_id: str
    username: str
    device: DeviceClient
    session_cookie: str

    @property
    def origin(self) -> str:
        return self.url.replace("127.0.0.1", "localhost")

    def http(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token}", **headers})

    @cached_property
    def pending_request(self) -> str:
        return new_request(self.runtime, self.credential_id, n=1)

    def requests_count(self) -> int:
        with transaction(self.runtime.sessions) as s:
            return int(s.scalar(select(func.count()).select_from(SigningRequest)) or 0)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, settings: Settings,
          hsm: Hsm) -> Iterator[Stack]:
    """For hostile input: each database gets its own server, as PostgreSQL refuses text SQLite stores
    (a NUL), so a fault may show on one only."""
    from tests.api.test_authenticator_lifecycle import SoftAuthenticator, register

    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    url = fresh_database(request.param, tmp)
    upgrade(url)
    port = free_port()
    public = f"http://localhost:{port}"
    rt = Runtime(settings.model_copy(update={
        "database_url": url, "audit_anchors_file": tmp / "anchors.jsonl", "public_base_url": public,
        "webauthn_origins": [public], "webauthn_rp_id": "localhost"}), hsm=hsm)
    with uvicorn_thread(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning")):
        base = f"http://127.0.0.1:{port}"
        username = f"mallory{uuid.uuid4().hex[:6]}"
        with transaction(rt.sessions) as s:
            directory.add_unit(s, ACTOR, "H001", "Trường Mầm non Thử", SigningMode.REMOTE)
            directory.add_user(s, ACTOR, username=username, unit_code="H001", full_name="Lê Văn Thử",
                               national_id="001190000789", role=Role.CHIEF_ACCOUNTANT)
        with transaction(rt.sessions) as s:
            credential = credentials.enroll(s, ACTOR, rt.hsm, rt.ca("viettel"), username=username,
                                            key_algorithm=KeyAlgorithm.EC_P256)
            credential_id = credential.id
        token = access_token(base, *relying_system_client(rt, "dvc-hostile", ("H001",)))
        device = make_device(rt, base, username)
        with httpx.Client(base_url=base, headers={"Origin": public}, timeout=30) as browser:
            registered = register(browser, SoftAuthenticator(public), activation_code(rt, username))
            assert registered.status_code == 200, registered.text
            cookie = browser.cookies["kyso_session"]
        yield Stack(request.param, rt, base, token, credential_id, username, device, cookie)
    rt.engine.dispose()


def sqlite_only(stack: Stack) -> None:
    if stack.kind != "sqlite":
        pytest.skip("not database-specific: checked once, on SQLite")
