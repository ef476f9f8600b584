"""``kyso serve``: one or several worker processes, and ``DATA_DIR/server.json`` while they run.

Several workers are run by uvicorn's supervisor, which starts them with the ``spawn`` method: each
worker is a fresh interpreter that loads PKCS#11 and logs in once itself (a PKCS#11 login is per
process, SoftHSM rewrites its token file at every login, and a forked child must initialise the
library again), and the supervising process never loads the module, so no PKCS#11 state crosses a
fork. Workers share nothing but the database (PostgreSQL) and the data dir; a worker that dies is
restarted by the supervisor.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.app import create_app
from broker import admin_socket
from broker.observability.logs import configure_logging
from broker.observability.multiprocess import mark_process_dead, multiprocess_dir, prepare_multiprocess_dir
from broker.runtime import Runtime
from broker.settings import Settings, load_settings, resolve_data_dir
from hsm import TokenMissing

WORKER_HEADER = "X-Kyso-Worker"
log = logging.getLogger("kyso.server")
LOGIN_ATTEMPTS = 10
GRACEFUL_SHUTDOWN_SECONDS = 3.0
"""At SIGTERM, requests still running after this long are cancelled (long polls were woken at once)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# -- inside a worker ---------------------------------------------------------------------------


def build_runtime(settings: Settings) -> Runtime:
    """This process's runtime, logged in to the token once and listening for notifications."""
    runtime = Runtime(settings)
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            _ = runtime.hsm  # the one login of this process
            break
        except TokenMissing:
            # Workers starting together may find the token store busy (SoftHSM rewrites it at each
            # login): retry briefly.
            if attempt == LOGIN_ATTEMPTS - 1:
                raise
            time.sleep(0.3 * (attempt + 1))
    runtime.notifier.start()
    return runtime


def serving_app(runtime: Runtime) -> FastAPI:
    """The API of one worker, which owns ``runtime`` and closes it when it stops."""
    app = create_app(runtime, close_runtime=True)
    app.add_middleware(WorkerHeader)
    app.add_middleware(WakeWaitersOnExit, runtime=runtime)
    return app


def worker_app() -> FastAPI:
    """The factory uvicorn calls in each spawned worker; ``kyso serve`` sets ``KYSO_DATA_DIR``."""
    settings = load_settings(resolve_data_dir(None))
    configure_logging(settings.log_format)
    try:
        return serving_app(build_runtime(settings))
    except Exception as exc:  # noqa: BLE001 - reported as one line, without secrets
        # uvicorn would restart a worker that raises here, forever: this exit status stops the server.
        log.error("worker %s cannot start: [%s] %s", os.getpid(), getattr(exc, "code", "internal_error"),
                  getattr(exc, "message", type(exc).__name__))
        sys.exit(STARTUP_FAILURE)


class WorkerHeader:
    """Names the worker process that answered (``X-Kyso-Worker: PID``), for operators and tests."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (WORKER_HEADER.lower().encode(), self.value)]
            await send(message)

        await self.app(scope, receive, send_with_header)


class WakeWaitersOnExit:
    """At SIGINT or SIGTERM, wakes the long polls (a phone waits up to a minute) so that they answer
    at once and the server stops within seconds, instead of waiting them out.

    uvicorn installs its exit handlers before the application's startup (in each worker process
    too); at startup this chains onto them: the server's own handling is unchanged.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                _chain_signal(signum, self.runtime.notifier.stop_waiting)
        await self.app(scope, receive, send)


def _chain_signal(signum: int, first: Callable[[], None]) -> None:
    previous = signal.getsignal(signum)

    def handler(sig: int, frame: Any) -> None:
        first()
        if callable(previous):  # uvicorn's: it stops the server
            previous(sig, frame)

    signal.signal(signum, handler)


# -- the serving process ---------------------------------------------------------------------


def server_json_path(data_dir: Path) -> Path:
    return data_dir / "server.json"


def write_server_json(data_dir: Path, url: str, workers: int, admin_socket: Path | None) -> None:
    path = server_json_path(data_dir)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "pid": os.getpid(), "workers": workers, "admin_socket": str(admin_socket) if admin_socket else None}, fh, indent=1)
    tmp.replace(path)


def remove_server_json(data_dir: Path) -> None:
    """Remove ``server.json`` if this process wrote it (another server may have replaced it)."""
    path = server_json_path(data_dir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def local_url(host: str, port: int) -> str:
    """The URL a local client uses: a wildcard address becomes loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Announcer(threading.Thread):
    """Writes ``server.json`` once ``/readyz`` answers; never after :meth:`withdraw`."""

    def __init__(self, data_dir: Path, url: str, workers: int, admin_socket: Path | None) -> None:
        super().__init__(name="kyso-announce", daemon=True)
        self.data_dir, self.url, self.workers, self.admin_socket = data_dir, url, workers, admin_socket
        self._withdrawn = threading.Event()
        self._write_lock = threading.Lock()

    def run(self) -> None:
        while not self._withdrawn.is_set():
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                with self._write_lock:
                    if not self._withdrawn.is_set():
                        write_server_json(self.data_dir, self.url, self.workers, self.admin_socket)
                return
            self._withdrawn.wait(0.2)

    def withdraw(self) -> None:
        with self._write_lock:
            self._withdrawn.set()
            remove_server_json(self.data_dir)


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also drops the live metrics of a worker it replaced."""

    def keep_subprocess_alive(self) -> None:
        before = {p.pid for p in self.processes}
        super().keep_subprocess_alive()
        for pid in before - {p.pid for p in self.processes}:
            if pid is not None:
                mark_process_dead(pid)

    def all_started(self) -> bool:
        return not any(p.exitcode == STARTUP_FAILURE for p in self.processes)


KEEP_ALIVE_SECONDS = 75
"""How long an idle connection stays open: longer than clients keep theirs (httpx 5 s, phones' and
proxies' up to a minute), so that the client closes first. uvicorn's 5 s equals httpx's, and a
request sent as the server closed the connection was lost to a reset (a phone's approval among them)."""


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of ``kyso serve`` and the sandbox. ``X-Forwarded-For``/``-Proto``
    are believed only from ``trusted_proxies`` (uvicorn's default believes 127.0.0.1, so any local
    caller or a proxy passing the header through could choose the origin written to the audit)."""
    proxies = list(settings.trusted_proxies)
    options.setdefault("timeout_graceful_shutdown", GRACEFUL_SHUTDOWN_SECONDS)
    options.setdefault("timeout_keep_alive", KEEP_ALIVE_SECONDS)
    return uvicorn.Config(app, proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None, **options)


def run(settings: Settings, host: str, port: int, workers: int) -> bool:
    """Serve until SIGINT or SIGTERM; False when a worker could not start."""
    data_dir = settings.data_dir.resolve()
    os.environ["KYSO_DATA_DIR"] = str(data_dir)  # read by the spawned workers
    configure_logging(settings.log_format)
    if workers > 1:  # the workers' metrics are summed through files (one process needs none)
        with warnings.catch_warnings():  # the supervisor itself records no metrics
            warnings.simplefilter("ignore")
            prepare_multiprocess_dir(multiprocess_dir() or data_dir / "prometheus")
    # uvicorn handles SIGINT/SIGTERM while it runs, then re-raises them to the handlers it found:
    # make those no-ops so that the clean-up below runs and the exit status is 0.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    logs: dict[str, Any] = {"log_config": None, "access_log": False, "log_level": "info"}  # kyso logs each request
    runtime: Runtime | None = None
    announcer: _Announcer | None = None
    admin = admin_socket.bind(data_dir)  # CLI commands that need the HSM come through it
    try:
        if workers == 1:
            runtime = build_runtime(settings)  # a wrong PIN or a missing token fails here, as one line
            config = uvicorn_config(serving_app(runtime), settings, host=host, port=port, **logs)
        else:
            config = uvicorn_config(f"{__name__}:worker_app", settings, factory=True, host=host, port=port,
                                    workers=workers, **logs)
        sock = config.bind_socket()
        url = local_url(host, int(sock.getsockname()[1]))
        settings.serve_at(url)  # unless set, the public base URL and WebAuthn origins are the bound address
        os.environ["KYSO_PUBLIC_BASE_URL"] = settings.public_base_url  # read by the spawned workers
        announcer = _Announcer(data_dir, url, workers, admin_socket.socket_path(data_dir))
        announcer.start()
        if workers == 1:
            server = uvicorn.Server(config)
            server.run(sockets=[sock, *([admin] if admin else [])])
            return server.started
        supervisor = _Supervisor(config, sockets=[sock, *([admin] if admin else [])])
        supervisor.run()
        return supervisor.all_started()
    finally:
        if announcer is not None:
            announcer.withdraw()
        admin_socket.unbind(admin, data_dir)
        if runtime is not None:
            runtime.close()
