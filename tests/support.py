"""Shared test helpers: independent verifiers, small builders, and the simulated parties around the
service (phones, webhook receivers, servers on loopback)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from asn1crypto import pem

from bench import scratch

if TYPE_CHECKING:
    import pytest
    import uvicorn

    from broker.db.models import RequestState
    from broker.runtime import Runtime
    from ca_adapters.emulator.server import EmulatorSet
    from kyso_device.client import DeviceClient
    from signer import KeySigner
    from tests.conftest import Enrolled

REPO = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of a command-line verifier; missing is a failure in CI, a skip elsewhere."""
    import pytest

    path = shutil.which(name)
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is not installed (make test installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def write_pem(path: Path, der: bytes) -> Path:
    path.write_bytes(pem.armor("CERTIFICATE", der))
    return path


def openssl_cms_verify(signature: Path, root_pem: Path, content: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [require_tool("openssl"), "cms", "-verify", "-inform", "DER", "-in", str(signature), "-CAfile", str(root_pem),
            "-purpose", "any", "-out", os.devnull]
    if content is not None:
        args += ["-binary", "-content", str(content)]
    return subprocess.run(args, capture_output=True, text=True)


def nss_db_with_root(directory: Path, root_pem: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    certutil = require_tool("certutil")
    subprocess.run([certutil, "-N", "--empty-password", "-d", f"sql:{directory}"], check=True, capture_output=True)
    subprocess.run([certutil, "-A", "-n", "root", "-t", "CT,C,C", "-i", str(root_pem), "-d", f"sql:{directory}"],
                   check=True, capture_output=True)
    return f"sql:{directory}"


def pdfsig(pdf: Path, nss: str) -> str:
    result = subprocess.run([require_tool("pdfsig"), "-nssdir", nss, str(pdf)], capture_output=True, text=True)
    return result.stdout + result.stderr


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """``check()``'s first truthy result, or its last one when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def relying_system_client(runtime: Runtime, name: str, units: tuple[str, ...] = ("U001",),
                          scopes: list[str] | None = None, **options: Any) -> tuple[str, str]:
    """A relying system of its own serving ``units`` (``options``: ``add_relying_system``'s, such as a
    webhook allowlist or a display name), and a client of it: (client id, secret)."""
    from broker import clients
    from broker.db.engine import transaction
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:
        clients.add_relying_system(s, ACTOR, name, list(units), **options)
        client, secret = clients.add_client(s, ACTOR, name, scopes)
        return client.client_id, secret


def access_token(base_url: str, client_id: str, secret: str) -> str:
    """A fresh access token of that client."""
    from kyso_client import KysoClient

    return KysoClient(base_url, client_id=client_id, client_secret=secret).access_token


def bearer_http(base_url: str, client_id: str, secret: str, timeout: float = 120) -> httpx.Client:
    """An HTTP client holding a fresh access token of that client."""
    token = access_token(base_url, client_id, secret)
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def file_body(enrolled: Enrolled, pdf: str, fmt: str, **document: Any) -> dict[str, Any]:
    """A request of lan's (RSA) for one inline document: ``pdf`` (base64) for PAdES, a small XML otherwise."""
    content = pdf if fmt == "pades" else b64(b"<PaymentOrder/>")
    return {"credential_id": enrolled.rsa, "format": fmt,
            "documents": [{"title": "UNC-1", "content": content, **document}]}


def wait_done(api: httpx.Client, request_id: str, *, wait: int = 20, polls: int = 10) -> dict[str, Any]:
    """The request once it left ``pending`` and ``approved`` (up to ``polls`` long polls of ``wait`` s)."""
    for _ in range(polls):
        body: dict[str, Any] = api.get(f"/v1/requests/{request_id}", params={"wait": wait}).json()
        if body["state"] not in ("pending", "approved"):
            return body
    raise AssertionError(f"the request {request_id} did not end in time")


def admin(data_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The admin CLI in this process on ``data_dir``: exit code, out, err."""
    from kyso.cli import run

    code = run(["--data-dir", str(data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


# -- the database: requests, signers' keys ----------------------------------------------------------------


def new_request(runtime: Runtime, credential_id: str, n: int = 2, ttl: int | None = None) -> str:
    """A pending request of ``n`` payment orders, made in the database (no relying system's call)."""
    from broker import credentials
    from broker.db.engine import transaction
    from broker.lifecycle import signing_requests
    from tests.conftest import ACTOR

    docs = [signing_requests.DocumentToSign(hashlib.sha256(f"order {i} {time.time()}".encode()).digest(),
                                            f"Ủy nhiệm chi số {i}",
                                            "Trả: Trường Nguyễn Trãi · Nhận: Việt Hưng · 125.000.000 VND")
            for i in range(n)]
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, credential_id)
        return signing_requests.create(s, runtime.settings, ACTOR, credential, docs,
                                       relying_system="dvc-test", provider=runtime.ca(credential.provider),
                                       ttl_seconds=ttl).id


def link_delegated(runtime: Runtime, emulators: EmulatorSet, provider: str, provider_user: str) -> str:
    """A delegated credential of lan's (the key stays at ``provider``, with a new signer there)."""
    from broker.credentials import delegated
    from broker.db.engine import transaction
    from ca_adapters.emulator.provider_apis.misa import misa_otp
    from ca_adapters.remote_clients.misa import MisaClient
    from tests.conftest import ACTOR

    user = emulators.state(provider).add_user(provider_user, "Nguyễn Thị Lan", "Trường Tiểu học Nguyễn Trãi")
    adapter = runtime.ca(provider)
    client = adapter.remote_signing()
    if isinstance(client, MisaClient):
        client.login(provider_user, user.password, misa_otp(user))
    with transaction(runtime.sessions) as s:
        # Nacencomm names its certificates by an integer id (idcts); the others by serial.
        ref = str(user.idcts) if provider == "nacencomm" else f"{user.certificate.serial_number:x}"
        credential = delegated.link(s, ACTOR, adapter, client, username="lan", provider_user_id=provider_user,
                                    serial_hex=ref)
        return credential.id


def cancel_request(runtime: Runtime, request_id: str) -> None:
    from broker.db.engine import transaction
    from broker.lifecycle import signing_requests
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:
        signing_requests.cancel(s, ACTOR, signing_requests.get(s, request_id))


def state_of(runtime: Runtime, request_id: str) -> RequestState:
    from broker.db.engine import transaction
    from broker.lifecycle import signing_requests

    with transaction(runtime.sessions) as s:
        return signing_requests.get(s, request_id).state


def key_signer(runtime: Runtime, credential_id: str) -> KeySigner:
    """The hosted key of a credential; built inside a session: the key's checks read the signer's unit."""
    from broker import credentials
    from broker.db.engine import transaction

    with transaction(runtime.sessions) as s:
        return credentials.key_signer(runtime.hsm, credentials.get_credential(s, credential_id))


def postgres_url() -> str:
    """``KYSO_TEST_DATABASE_URL``, the PostgreSQL test database; unset is a failure in CI, a skip elsewhere."""
    import pytest

    url = os.environ.get("KYSO_TEST_DATABASE_URL")
    if not url:
        if in_ci():
            pytest.fail("KYSO_TEST_DATABASE_URL is not set under CI (.ci/run sets it)")
        pytest.skip("KYSO_TEST_DATABASE_URL not set")
    return url


def fresh_schema(url: str) -> None:
    """Empty the PostgreSQL test database (it exists: .ci/run makes it)."""
    scratch.fresh_database(url, create=False)


def fresh_database(kind: str, directory: Path) -> str:
    """The URL of an empty database: ``sqlite``, a new file in ``directory``; ``postgresql``, the test
    database emptied (skipped when there is none)."""
    if kind == "sqlite":
        return f"sqlite:///{directory / 'kyso.db'}"
    url = postgres_url()
    fresh_schema(url)
    return url


# -- the signers' phones ------------------------------------------------------------------------------------


def activation_code(runtime: Runtime, username: str) -> str:
    from broker import approvals
    from broker.db.engine import transaction
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:
        return approvals.issue_activation_code(s, runtime.settings, ACTOR, username)[0]


def make_device(runtime: Runtime, base_url: str, username: str) -> DeviceClient:
    """A phone of ``username``, enrolled over HTTP with a fresh activation code."""
    from broker import approvals
    from broker.db.engine import transaction
    from kyso_device.client import DeviceClient, enroll
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:
        code, uri = approvals.issue_activation_code(s, runtime.settings, ACTOR, username)
    assert uri.startswith("kyso://activate?") and "code=" in uri
    return DeviceClient(enroll(base_url, code, f"{username}-phone"))


def pending_one(device: DeviceClient, request_id: str) -> dict[str, Any]:
    """The request as the phone is shown it (exactly once among its pending ones)."""
    found = [r for r in device.pending() if r["request_id"] == request_id]
    assert len(found) == 1
    return found[0]


class AutoApprover:
    """Simulated phones, each polling on a thread of its own and deciding whatever reaches it
    (``decision``: approve unless changed). With ``share``, the devices are one signer's several
    phones and each request goes to one of them, by its id. They keep going through failures (a
    request decided meanwhile, a server worker dying under the call), each recorded in ``errors``."""

    def __init__(self, devices: list[DeviceClient], *, share: bool = False) -> None:
        from biometrics import Decision

        self.devices = devices
        self.decision = Decision.APPROVE
        self.errors: list[str] = []
        self._share = share
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(len(devices))]
        for t in self._threads:
            t.start()

    def _run(self, n: int) -> None:
        device = self.devices[n]
        while not self._stop.is_set():
            try:
                mine = [r for r in device.pending(wait=2)
                        if not self._share or int(r["request_id"], 16) % len(self.devices) == n]
            except Exception as exc:  # noqa: BLE001 - recorded; the phone polls again
                self.errors.append(repr(exc))
                self._stop.wait(0.2)
                continue
            failed = False
            for request in mine:
                try:
                    device.decide(request, self.decision)
                except Exception as exc:  # noqa: BLE001 - recorded; the phone goes on with the others
                    self.errors.append(repr(exc))
                    failed = True
            if failed:
                self._stop.wait(0.2)
            elif self._share and not mine:
                self._stop.wait(0.02)  # the pending ones are other phones': do not spin on them

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


# -- servers on loopback ------------------------------------------------------------------------------------


@contextmanager
def uvicorn_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """A uvicorn server in this process, on a thread of its own, from started to stopped."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class WebhookReceiver:
    """An HTTP server on loopback (``port``: 0 for any free one) that records the webhook deliveries it
    receives, in order: each call's headers and body. The first ``fail_first`` calls answer 500 (the
    sender retries them), the others 204."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.calls: list[tuple[dict[str, str], str]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.lock:
                    receiver.calls.append(({k: v for k, v in self.headers.items()}, body))
                    failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/kyso"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def events(self) -> Counter[str]:
        """The calls for each event (``Kyso-Event-Id``), the failed ones included."""
        with self.lock:
            return Counter(headers["Kyso-Event-Id"] for headers, _ in self.calls)

    def close(self) -> None:
        self.server.shutdown()
