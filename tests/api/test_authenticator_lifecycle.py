"""WebAuthn authenticators are listed and revoked beside phones; revoking one ends its sessions.

A software authenticator (P-256, "none" attestation, user verified) talks to the real server over
HTTP, as a browser would; the administrator uses the real CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cbor2
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from broker import approvals, directory
from broker.db.engine import transaction
from broker.db.models import AuditEvent, DeviceStatus, Role, WebAuthnCredential, WebSession
from broker.runtime import Runtime
from broker.settings import load_settings
from tests.conftest import ACTOR, Enrolled
from tests.support import activation_code, admin


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SoftAuthenticator:
    """A platform authenticator in software: enough of WebAuthn Level 2 for py_webauthn to verify."""

    origin: str
    rp_id: str = "localhost"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    counter: int = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}).encode()

    def _auth_data(self, attested: bytes = b"") -> bytes:
        self.counter += 1
        flags = 0x01 | 0x04 | (0x40 if attested else 0)  # user present, user verified, attested data
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + self.counter.to_bytes(4, "big") + attested

    def create(self, options: dict) -> dict:  # type: ignore[type-arg]
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        client_data = self._client_data("webauthn.create", options["challenge"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": self._auth_data(attested)})
        cid = b64url(self.credential_id)
        return {"id": cid, "rawId": cid, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation),
                             "transports": ["internal"]}}

    def get(self, options: dict) -> dict:  # type: ignore[type-arg]
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data()
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        cid = b64url(self.credential_id)
        return {"id": cid, "rawId": cid, "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature), "userHandle": None}}

    @property
    def id(self) -> str:
        return b64url(self.credential_id)


def page_origin(live_server: str) -> str:
    return live_server.replace("127.0.0.1", "localhost")


def browser(live_server: str) -> httpx.Client:
    """An HTTP client that sends what the approval page's own fetch calls send (its Origin)."""
    return httpx.Client(base_url=live_server, headers={"Origin": page_origin(live_server)}, timeout=30)


def new_user(runtime: Runtime, enrolled: Enrolled) -> str:
    username = f"sig{uuid.uuid4().hex[:10]}"
    with transaction(runtime.sessions) as s:
        directory.add_user(s, ACTOR, username=username, unit_code=enrolled.unit, full_name="Lê Thị Thử",
                           national_id=str(uuid.uuid4().int)[:12], role=Role.OTHER)
    return username


def register(client: httpx.Client, authenticator: SoftAuthenticator, code: str, name: str | None = None) -> httpx.Response:
    start = client.post("/approve/api/register/options", json={"activation_code": code})
    assert start.status_code == 200, start.text
    credential = authenticator.create(start.json()["options"])
    return client.post("/approve/api/register/verify", json={"challenge_id": start.json()["challenge_id"],
                                                             "activation_code": code, "credential": credential,
                                                             **({"name": name} if name else {})})


def login(client: httpx.Client, authenticator: SoftAuthenticator, username: str) -> httpx.Response:
    start = client.post("/approve/api/login/options", json={"username": username})
    assert start.status_code == 200, start.text
    return client.post("/approve/api/login/verify", json={"challenge_id": start.json()["challenge_id"],
                                                          "credential": authenticator.get(start.json()["options"])})


def test_cli_lists_and_revokes_a_webauthn_authenticator_and_ends_its_sessions(
        runtime: Runtime, live_server: str, enrolled: Enrolled, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    username = new_user(runtime, enrolled)
    leaked, kept = SoftAuthenticator(page_origin(live_server)), SoftAuthenticator(page_origin(live_server))
    with browser(live_server) as attacker, browser(live_server) as signer:
        assert register(attacker, leaked, activation_code(runtime, username), "attacker's key").status_code == 200
        assert register(signer, kept, activation_code(runtime, username)).status_code == 200
        assert attacker.get("/approve/api/requests").status_code == 200
        again = browser(live_server)
        assert login(again, leaked, username).status_code == 200  # a second session of the leaked key

        code, out, _ = admin(data_dir, capsys, "device", "list", "--user", username)
        assert code == 0
        assert leaked.id[:12] in out and kept.id[:12] in out and out.count("webauthn") == 2  # ids shortened
        assert "attacker's key" in out and "browser authenticator" in out

        code, out, _ = admin(data_dir, capsys, "device", "revoke", "--user", username, "--", leaked.id)
        assert code == 0 and f"webauthn {leaked.id} of {username} revoked" in out, (out, _)

        # Both of its sessions ended at once; the other authenticator's session lives on.
        for client in (attacker, again):
            ended = client.get("/approve/api/requests")
            assert ended.status_code == 401 and ended.json()["code"] == "not_signed_in"
        assert signer.get("/approve/api/requests").status_code == 200
        refused = login(attacker, leaked, username)
        assert refused.status_code == 403 and refused.json()["code"] == "confirmation_invalid"
        again.close()

    with transaction(runtime.sessions) as s:
        row = s.get(WebAuthnCredential, leaked.id)
        assert row is not None and row.status is DeviceStatus.REVOKED and row.revoked_at is not None
        assert not s.scalars(select(WebSession).where(WebSession.authenticator_id == leaked.id)).all()
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "device.revoke",
                                                   AuditEvent.target_id == leaked.id)).one()
        assert event.details == {"user": username, "kind": "webauthn", "authenticator": leaked.id, "sessions_ended": 2}
        assert event.actor.startswith("cli:")

    code, out, _ = admin(data_dir, capsys, "device", "list", "--user", username)
    assert re.search(rf"{re.escape(leaked.id[:12])}.*revoked", out) and re.search(rf"{re.escape(kept.id[:12])}.*active", out)
    code, _, err = admin(data_dir, capsys, "device", "revoke", "--user", username, "--", leaked.id)
    assert code == 2 and "error [device_not_active]" in err
    code, _, err = admin(data_dir, capsys, "device", "revoke", "--user", "lan", "--", kept.id)  # not lan's
    assert code == 2 and "error [not_found]" in err
    with transaction(runtime.sessions) as s:
        assert s.get(WebAuthnCredential, kept.id).status is DeviceStatus.ACTIVE  # type: ignore[union-attr]


def test_a_session_whose_authenticator_was_revoked_otherwise_is_over(runtime: Runtime, live_server: str,
                                                                     enrolled: Enrolled) -> None:
    """Even a session row left behind (opened while the revocation committed) is refused at use."""
    username = new_user(runtime, enrolled)
    authenticator = SoftAuthenticator(page_origin(live_server))
    with browser(live_server) as client:
        assert register(client, authenticator, activation_code(runtime, username)).status_code == 200
        with transaction(runtime.sessions) as s:
            s.get(WebAuthnCredential, authenticator.id).status = DeviceStatus.REVOKED  # type: ignore[union-attr]
        answer = client.get("/approve/api/requests")
        assert answer.status_code == 401 and answer.json()["code"] == "not_signed_in"


def test_phones_are_revoked_by_the_same_command(runtime: Runtime, enrolled: Enrolled, data_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    username = new_user(runtime, enrolled)
    public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with transaction(runtime.sessions) as s:
        device, _ = approvals.enroll_device(s, ACTOR, activation_code(runtime, username), public, "phone of test")
        device_id = device.id
    code, out, _ = admin(data_dir, capsys, "device", "list", "--user", username)
    assert code == 0 and device_id[:12] in out and "phone" in out
    code, out, _ = admin(data_dir, capsys, "device", "revoke", "--user", username, "--", device_id)
    assert code == 0 and f"phone {device_id} of {username} revoked" in out
    with transaction(runtime.sessions) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "device.revoke",
                                                   AuditEvent.target_id == device_id)).one()
        assert event.details == {"user": username, "kind": "phone"}


# -- the activation QR names the server's public address ---------------------------------------------


def _base_url_of(uri: str) -> str:
    assert uri.startswith("kyso://activate?")
    return parse_qs(urlsplit(uri).query)["base_url"][0]


def test_activation_uri_names_the_running_server_unless_a_public_url_is_set(
        runtime: Runtime, enrolled: Enrolled, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server_json = data_dir / "server.json"
    assert not server_json.exists()
    server_json.write_text(json.dumps({"url": "http://127.0.0.1:18471", "pid": 1, "workers": 1, "admin_socket": None}))
    try:
        code, out, _ = admin(data_dir, capsys, "device", "activate", "--user", "lan", "--no-qr")
        assert code == 0
        uri = next(line for line in out.splitlines() if line.startswith("kyso://"))
        assert _base_url_of(uri) == "http://localhost:18471"  # loopback as localhost: WebAuthn takes no IP
    finally:
        server_json.unlink()

    explicit = load_settings(data_dir, public_base_url="https://ky.so.example.vn")
    server_json.write_text(json.dumps({"url": "http://127.0.0.1:18471"}))
    try:
        with transaction(runtime.sessions) as s:
            _, uri = approvals.issue_activation_code(s, explicit, ACTOR, "lan")
        assert _base_url_of(uri) == "https://ky.so.example.vn"
    finally:
        server_json.unlink()


def test_a_server_defaults_its_public_url_and_webauthn_origins_to_the_bound_address(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    settings.serve_at("http://127.0.0.1:18472")
    assert settings.public_base_url == "http://localhost:18472"
    assert settings.webauthn_origins == ["http://localhost:18472"] and settings.webauthn_rp_id == "localhost"
    settings.serve_at("http://10.1.2.3:8400")  # a second bind moves the default along
    assert settings.public_base_url == "http://10.1.2.3:8400"

    (tmp_path / "kyso.toml").write_text('public_base_url = "https://sign.example.vn"\n')
    configured = load_settings(tmp_path)
    configured.serve_at("http://127.0.0.1:18472")
    assert configured.public_base_url == "https://sign.example.vn"
    assert configured.webauthn_origins == ["https://sign.example.vn"] and configured.webauthn_rp_id == "sign.example.vn"
    assert approvals.activation_base_url(configured) == "https://sign.example.vn"


def test_revocation_on_each_database_with_the_longest_credential_id(db_runtime: Runtime) -> None:
    """Ids up to the column's 255 characters: listed, revoked, audited; its sessions deleted in the same transaction."""
    from datetime import datetime, timedelta, timezone

    from broker.db.models import SigningMode

    long_id = b64url(secrets.token_bytes(191))  # 255 characters
    with transaction(db_runtime.sessions) as s:
        directory.add_unit(s, ACTOR, "U900", "Đơn vị", SigningMode.REMOTE)
        user = directory.add_user(s, ACTOR, username="rev", unit_code="U900", full_name="Rev", national_id="001000000900",
                                  role=Role.OTHER)
        s.add(WebAuthnCredential(id=long_id, user_id=user.id, public_key=b"k", sign_count=0, status=DeviceStatus.ACTIVE))
        s.flush()
        s.add(WebSession(token_hash="a" * 64, user_id=user.id, authenticator_id=long_id,
                         expires_at=datetime.now(timezone.utc) + timedelta(minutes=5)))
    with transaction(db_runtime.sessions) as s:
        [listed] = approvals.list_authenticators(s, "rev")
        assert (listed.id, listed.kind, listed.status) == (long_id, "webauthn", DeviceStatus.ACTIVE)
        [revoked] = approvals.revoke_device(s, ACTOR, "rev", long_id)
        assert revoked.status is DeviceStatus.REVOKED
    with transaction(db_runtime.sessions) as s:
        assert s.get(WebSession, "a" * 64) is None
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "device.revoke")).one()
        assert event.target_id == long_id[:64] and event.details["authenticator"] == long_id
