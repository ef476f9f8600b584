"""``kyso sandbox``: the broker on loopback with demo data and auto-approving simulated phones.

For integrators: one command gives a running service, a client, a ready token, credentials of
every provider and key type, and ``DATA_DIR/sandbox.json`` describing them (written atomically,
0600, once ``/readyz`` answers). ``--manual-approval USER`` leaves that demo user's requests to a
person with the approval app (``/approve``) instead of a simulated phone.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from asn1crypto import pem
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from api.app import create_app
from biometrics import Decision, sign_decision
from broker import admin_socket, approvals, clients, credentials, directory
from broker.audit import Actor
from broker.db.engine import read_connection, transaction
from broker.db.models import Credential, OAuthClient, RelyingSystem, Role, SigningMode, Unit, User
from broker.errors import InvalidInput, PolicyViolation
from broker.lifecycle import signing_requests, waiting
from broker.notify import USER_CHANNEL
from broker.observability.logs import configure_logging
from broker.runtime import Runtime
from broker.settings import load_settings
from ca_adapters import provider_names
from ca_adapters.emulator.server import EmulatorSet
from hsm import KeyAlgorithm
from kyso.operations import setup
from kyso.server import remove_server_json, uvicorn_config, write_server_json
from signer import SignatureScheme

ACTOR = Actor("sandbox", "kyso-sandbox")
UNIT = ("SBX-001", "Trường Tiểu học Thử Nghiệm")
USERS = [
    ("sbx.ketoan", "Nguyễn Thị Kế Toán", "001185000999", Role.CHIEF_ACCOUNTANT),
    ("sbx.chutk", "Trần Văn Chủ", "001080000999", Role.ACCOUNT_HOLDER),
]
CREDENTIALS = [
    ("sbx.ketoan", "vnpt", KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PKCS1_V15),
    ("sbx.ketoan", "misa", KeyAlgorithm.RSA_3072, SignatureScheme.RSA_PSS),
    ("sbx.chutk", "viettel", KeyAlgorithm.EC_P256, SignatureScheme.ECDSA),
    ("sbx.chutk", "nacencomm", KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PKCS1_V15),
]
RELYING_SYSTEM = "sandbox-dvc"
RELYING_SYSTEM_NAME = "Cổng DVC Kho bạc (thử nghiệm)"
TOKEN_SECONDS = 24 * 3600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(runtime: Runtime) -> None:
    """Demo unit, users, credentials and relying system; kept across restarts."""
    with transaction(runtime.sessions) as s:
        if s.scalar(select(Unit).where(Unit.code == UNIT[0])) is None:
            directory.add_unit(s, ACTOR, UNIT[0], UNIT[1], SigningMode.REMOTE)
        for username, name, national_id, role in USERS:
            if s.scalar(select(User).where(User.username == username)) is None:
                directory.add_user(s, ACTOR, username=username, unit_code=UNIT[0], full_name=name,
                                   national_id=national_id, role=role)
        rs = s.scalar(select(RelyingSystem).where(RelyingSystem.name == RELYING_SYSTEM))
        if rs is None:
            clients.add_relying_system(s, ACTOR, RELYING_SYSTEM, [UNIT[0]], display_name=RELYING_SYSTEM_NAME)
        elif rs.display_name is None:  # a sandbox made before relying systems had display names
            rs.display_name = RELYING_SYSTEM_NAME
    for username, provider, algorithm, scheme in CREDENTIALS:
        with transaction(runtime.sessions) as s:
            user = directory.get_user(s, username)
            if any(c.provider == provider and c.key_algorithm == algorithm.value for c in user.credentials):
                continue
            credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca(provider), username=username,
                               key_algorithm=algorithm, scheme=scheme)


def client_and_token(runtime: Runtime) -> tuple[str, str, str]:
    """The sandbox client (a fresh secret at every start: kyso keeps only hashes) and a 24-hour token."""
    with transaction(runtime.sessions) as s:
        existing = s.scalar(select(OAuthClient).join(RelyingSystem).where(RelyingSystem.name == RELYING_SYSTEM))
        if existing is None:
            client, secret = clients.add_client(s, ACTOR, RELYING_SYSTEM)
            client_id = client.client_id
        else:
            client_id = existing.client_id
            secret = clients.rotate_secret(s, ACTOR, client_id)
    with transaction(runtime.sessions) as s:
        token, _, _ = clients.issue_token(s, "127.0.0.1", client_id, secret, None, lifetime=TOKEN_SECONDS)
    return client_id, secret, token


def check_manual(usernames: list[str]) -> list[str]:
    """The demo users whose requests a person approves in the app (``--manual-approval``)."""
    demo = [u[0] for u in USERS]
    unknown = sorted(set(usernames) - set(demo))
    if unknown:
        raise InvalidInput(f"--manual-approval takes demo users ({', '.join(demo)}), not {', '.join(unknown)}")
    return sorted(set(usernames))


def manual_approvers(runtime: Runtime, base_url: str, usernames: list[str]) -> list[dict[str, str]]:
    """A fresh activation code for each manual user, to register a face or fingerprint in the app."""
    found = []
    for username in usernames:
        with transaction(runtime.sessions) as s:
            code, _ = approvals.issue_activation_code(s, runtime.settings, ACTOR, username)
        found.append({"user": username, "activation_code": code, "approval_app": f"{base_url}/approve"})
    return found


class SimulatedPhones:
    """One auto-approving approval device per demo user (sandbox only), but for ``manual`` users.

    Woken by the notifier when a request is created (re-checking every second anyway), it
    approves what is pending through the same protocol as a real phone.
    """

    def __init__(self, runtime: Runtime, manual: list[str] | None = None) -> None:
        self.runtime = runtime
        self.devices: list[tuple[str, int, ec.EllipticCurvePrivateKey, list[int]]] = []
        for username, *_ in USERS:
            if username in (manual or []):
                continue
            key = ec.generate_private_key(ec.SECP256R1())
            public = key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            with transaction(runtime.sessions) as s:
                code, _ = approvals.issue_activation_code(s, runtime.settings, ACTOR, username)
                device, token = approvals.enroll_device(s, ACTOR, code, public, f"simulated phone of {username}")
                user_id = device.user_id
            self.devices.append((token, user_id, key, [0]))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-phones", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        rt = self.runtime
        while not self._stop.is_set():
            seen = rt.notifier.version(USER_CHANNEL)
            phones = {user_id: (token, key, counter) for token, user_id, key, counter in self.devices}
            with read_connection(rt.sessions) as connection:
                pending = [(*phones[r.user_id], r.id, r.binding)
                           for r in signing_requests.awaiting_confirmation(connection, list(phones))]
            for token, key, counter, request_id, binding in pending:
                counter[0] += 1
                signature = sign_decision(key, binding, Decision.APPROVE, counter[0])
                try:
                    decided = approvals.decide_with_device(rt.sessions, rt.settings, "simulated-phone", token,
                                                           request_id, Decision.APPROVE, counter[0],
                                                           base64.b64encode(signature).decode())
                    rt.notifier.notify(*waiting.changed_topics(decided))
                except Exception:  # noqa: BLE001 - a request may have been decided or expired meanwhile
                    pass
            rt.notifier.wait(seen, 1.0, USER_CHANNEL)  # woken by new requests only


def describe(runtime: Runtime, base_url: str, client_id: str, secret: str, token: str,
             manual: list[dict[str, str]] | None = None) -> dict[str, Any]:
    trust_dir = runtime.settings.data_dir.resolve() / "trust"
    trust_dir.mkdir(exist_ok=True)
    anchors = sorted({der for provider in {c[1] for c in CREDENTIALS} for der in runtime.ca(provider).trust_anchors()})
    roots = []
    for i, der in enumerate(anchors):
        path = trust_dir / ("national-root-test.pem" if i == 0 else f"root-{i}.pem")
        path.write_bytes(pem.armor("CERTIFICATE", der))
        roots.append(str(path))
    with transaction(runtime.sessions) as s:
        creds = [{"credential_id": c.id, "user_id": c.user.username, "ca": c.provider, "key_algo": c.key_algorithm}
                 for c in s.scalars(select(Credential).join(User).join(Unit).where(Unit.code == UNIT[0])
                                    .order_by(Credential.created_at))]
    return {
        "base_url": base_url,
        "access_token": token,
        "client_id": client_id,
        "client_secret": secret,
        "token_url": f"{base_url}/oauth2/token",
        "trust_anchors": roots,
        "credentials": creds,
        "manual_approval": manual or [],
    }


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
    tmp.replace(path)


def run(data_dir: Path, port: int, host: str = "127.0.0.1", manual_approval: list[str] | None = None) -> None:
    manual_users = check_manual(manual_approval or [])
    settings = load_settings(data_dir)
    # Redacting handler before anything logs; on stdout, beside the sandbox's own lines: one line per request.
    configure_logging(settings.log_format, default="text", stream=sys.stdout)
    if not setup.is_initialised(settings):
        setup.init_data_dir(settings, ACTOR, sandbox=True)
        settings = load_settings(data_dir)
    if not settings.sandbox:
        raise PolicyViolation(f"{data_dir} is not a sandbox data dir (made without --sandbox)")
    if "webhook_allow_private" not in settings.model_fields_set:  # the integrator's receiver is on its own machine
        settings.webhook_allow_private = True
    port = port or free_port()
    settings.serve_at(f"http://localhost:{port}")  # unless kyso.toml or KYSO_* names a public address
    base_url = settings.public_base_url
    admin = admin_socket.bind(data_dir)  # the CLI's way to the token while the sandbox runs
    runtime = Runtime(settings)
    sandbox_json = data_dir / "sandbox.json"
    sandbox_json.unlink(missing_ok=True)
    emulators = EmulatorSet(settings.pki_dir, provider_names()).start()
    seed(runtime)
    client_id, secret, token = client_and_token(runtime)
    phones = SimulatedPhones(runtime, manual_users)
    phones.start()
    manual = manual_approvers(runtime, base_url, manual_users)
    config = uvicorn_config(create_app(runtime), settings, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    # uvicorn.Config installed handlers of its own on its loggers: send them through kyso's again.
    configure_logging(settings.log_format, default="text", stream=sys.stdout)
    sockets = [config.bind_socket(), *([admin] if admin else [])]

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        write_atomically(sandbox_json, describe(runtime, base_url, client_id, secret, token, manual))
        write_server_json(data_dir, base_url, 1, admin_socket.socket_path(data_dir))
        print(f"kyso sandbox ready at {base_url}; details in {sandbox_json}", flush=True)
        others = [u[0] for u in USERS if u[0] not in manual_users]
        if others:
            print(f"simulated phones approve every request of {', '.join(others)}: sandbox only", flush=True)
        for entry in manual:
            print(f"{entry['user']}'s requests wait for the approval app: open {entry['approval_app']} and register "
                  f"with activation code {entry['activation_code']}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    # uvicorn handles SIGINT/SIGTERM during run() and re-raises them afterwards to the handlers
    # it found: make those no-ops so that the cleanup below runs and the exit is clean.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    try:
        server.run(sockets=sockets)
    finally:
        remove_server_json(data_dir)
        admin_socket.unbind(admin, data_dir)
        phones.stop()
        emulators.stop()
        sandbox_json.unlink(missing_ok=True)
        runtime.close()
