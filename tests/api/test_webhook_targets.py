"""Webhook targets: allowlists matched by origin, entries checked when added, malformed URLs answered
400, special-purpose addresses refused, and deliveries connecting to the address that was checked."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from broker import clients
from broker.db.engine import transaction
from broker.db.models import AuditEvent, DeliveryState, RelyingSystem, SigningRequest, WebhookDelivery
from broker.errors import InvalidInput
from broker.lifecycle import webhook_targets, webhooks
from broker.lifecycle.signing_requests import now
from broker.lifecycle.webhook_targets import is_special, validate_allowlist
from broker.runtime import Runtime
from kyso.cli import run
from tests.conftest import ACTOR, Enrolled
from tests.support import WebhookReceiver, b64, bearer_http, relying_system_client

RS = "dvc-hook-targets"
ALLOWLIST = ["https://dvc.example", "https://localhost:8443/hooks"]


@pytest.fixture(scope="module")
def api(runtime: Runtime, live_server: str, enrolled: Enrolled) -> Iterator[httpx.Client]:
    client = relying_system_client(runtime, RS, (enrolled.unit,), webhook_allowlist=ALLOWLIST)
    with bearer_http(live_server, *client, timeout=60) as http:
        yield http


def create(api: httpx.Client, enrolled: Enrolled, webhook_url: str) -> httpx.Response:
    digest = b64(hashlib.sha256(webhook_url.encode()).digest())
    return api.post("/v1/requests", json={"credential_id": enrolled.ec, "webhook_url": webhook_url,
                                          "hashes": [{"hash": digest, "title": "UNC webhook"}]})


def requests_of(runtime: Runtime, name: str) -> int:
    with transaction(runtime.sessions) as s:
        query = select(func.count()).select_from(SigningRequest).where(SigningRequest.relying_system == name)
        return s.scalar(query) or 0


LONG_LABEL = "a" * 300

MALFORMED = [
    "https://dvc.example:99999/hooks",
    "https://dvc.example:abc/hooks",
    "https://dvc.example:0/hooks",
    "https://dvc.example:/hooks",
    "https://[zz]/hooks",
    "https://[::1/hooks",
    "https://[fe80::1%25eth0]/hooks",
    f"https://{LONG_LABEL}.dvc.example/hooks",
    "https://dvc.example:8443:1/hooks",
    "https://127.1/hooks",
    "https://2130706433/hooks",
    "https://0x7f.0.0.1/hooks",
    "https:///hooks",
    "https:dvc.example/hooks",
    "ftp://dvc.example/hooks",
    "https://dvc.example/hooks#frag",
    "https://dvc.example/hooks/%zz",
    "https://dvc.example/ho oks",
    "https://dvc.example/hooks\n",
    "https://" + "d" * 3000 + ".example/",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_webhook_urls_answer_400(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, url: str) -> None:
    response = create(api, enrolled, url)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_webhook_url"
    assert len(body["detail"]) < 300 and LONG_LABEL not in body["detail"]
    assert requests_of(runtime, RS) == 0


@pytest.mark.parametrize(("url", "code"), [
    ("https://dvc.example@1.2.3.4/hook", "invalid_webhook_url"),  # userinfo: the host is 1.2.3.4
    ("https://dvc.example:@1.2.3.4/hook", "invalid_webhook_url"),
    ("https://dvc.example\\@1.2.3.4/hook", "invalid_webhook_url"),  # backslash: parsers disagree
    ("https://1.2.3.4\\.dvc.example/hook", "invalid_webhook_url"),
    ("https://dvc.example.attacker.test/hook", "webhook_not_allowed"),  # a prefix of the host name
    ("https://dvc.example:8443/hook", "webhook_not_allowed"),  # another port
    ("http://dvc.example/hook", "invalid_webhook_url"),  # another scheme
    ("https://localhost:8443/hooksevil", "webhook_not_allowed"),  # the path prefix on a segment boundary
    ("https://localhost:8443/hooks/../admin", "invalid_webhook_url"),
    ("https://localhost:8443/hooks/%2e%2e/admin", "invalid_webhook_url"),
    ("https://localhost:8443/hooks%2f..%2fadmin", "invalid_webhook_url"),
    ("https://localhost:8443/hooks/kyso", "webhook_target_refused"),  # allowed, but it is loopback
])
def test_allowlist_matches_parsed_origins(api: httpx.Client, runtime: Runtime, enrolled: Enrolled, url: str,
                                          code: str) -> None:
    response = create(api, enrolled, url)
    assert (response.status_code, response.json()["code"]) == (400, code), response.text
    assert requests_of(runtime, RS) == 0


@pytest.mark.parametrize("address", [
    "0.0.0.0", "0.1.2.3", "10.1.2.3", "100.64.0.1", "100.127.255.254", "127.0.0.1", "169.254.169.254", "172.16.0.1",
    "192.0.0.8", "192.0.0.170", "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.1",
    "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:100.64.0.1", "64:ff9b::a00:1",
    "64:ff9b:1::1", "100::1", "2001::1", "2001:db8::1", "2002:7f00:1::1", "2002:808:808::1", "fc00::1", "fd12::1",
    "fe80::1", "fec0::1", "ff02::1", "3fff::1",
])
def test_special_purpose_addresses_count_as_private(address: str) -> None:
    assert is_special(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "::ffff:8.8.8.8", "2001:4860:4860::8888", "2606:4700::1111"])
def test_public_addresses_are_not(address: str) -> None:
    assert not is_special(ipaddress.ip_address(address))


@pytest.mark.parametrize(("entry", "code"), [
    ("https://dvc.example@1.2.3.4/", "invalid_webhook_url"),
    ("https://dvc.example\\@1.2.3.4/", "invalid_webhook_url"),
    ("https://dvc.example:99999/", "invalid_webhook_url"),
    (f"https://{LONG_LABEL}.example/", "invalid_webhook_url"),
    ("https://dvc.example/hooks?x=1", "invalid_webhook_url"),
    ("dvc.example/hooks", "invalid_webhook_url"),
    ("http://dvc.example/hooks", "invalid_webhook_url"),  # https only unless private targets are allowed
    ("https://100.64.0.1/", "webhook_target_refused"),
    ("https://192.0.0.1/", "webhook_target_refused"),
    ("https://198.18.0.1/", "webhook_target_refused"),
    ("https://[2002:7f00:1::1]/", "webhook_target_refused"),  # 6to4 of 127.0.0.1
    ("https://[::ffff:10.0.0.1]/", "webhook_target_refused"),
    ("https://[64:ff9b::a00:1]/", "webhook_target_refused"),
    ("https://0.0.0.0/", "webhook_target_refused"),
])
def test_allowlist_entries_are_checked_when_added(runtime: Runtime, enrolled: Enrolled, entry: str, code: str) -> None:
    name = f"dvc-bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidInput) as refused:
        with transaction(runtime.sessions) as s:
            clients.add_relying_system(s, ACTOR, name, [enrolled.unit], ["https://dvc.example/hooks", entry])
    assert refused.value.code == code
    assert len(refused.value.message) < 300
    with transaction(runtime.sessions) as s:
        assert s.scalar(select(RelyingSystem).where(RelyingSystem.name == name)) is None
        assert s.scalar(select(AuditEvent).where(AuditEvent.target_id == name)) is None


def test_entries_are_stored_canonical_and_private_ones_need_allow_private(runtime: Runtime, enrolled: Enrolled) -> None:
    assert validate_allowlist(["https://DVC.Example:443/Hooks", "https://[2001:4860::1]:8443"],
                              allow_private=False) == ["https://dvc.example/Hooks", "https://[2001:4860::1]:8443/"]
    assert validate_allowlist(["http://127.0.0.1:8080/hooks/"], allow_private=True) == ["http://127.0.0.1:8080/hooks/"]
    for entry in ("http://user@127.0.0.1:8080/", "http://127.0.0.1:99999/", "http://127.0.0.1\\x/"):
        with pytest.raises(InvalidInput):  # allow_private never lets these through
            validate_allowlist([entry], allow_private=True)


def test_rs_add_refuses_a_bad_entry_with_a_clear_error(data_dir: Path, runtime: Runtime, enrolled: Enrolled,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["--data-dir", str(data_dir), "rs", "add", "dvc-cli-hooks", "--unit", enrolled.unit,
                "--webhook-allow", "https://dvc.example@1.2.3.4/hook"])
    _, err = capsys.readouterr()
    assert code == 2 and "error [invalid_webhook_url]" in err and "Traceback" not in err
    with transaction(runtime.sessions) as s:
        assert s.scalar(select(RelyingSystem).where(RelyingSystem.name == "dvc-cli-hooks")) is None


# -- deliveries ------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def queue(rt: Runtime, url: str, allowlist: list[str]) -> str:
    """A due delivery, as ``enqueue`` writes it (the allowlist set as stored, unchecked)."""
    event_id = uuid.uuid4().hex
    with transaction(rt.sessions) as s:
        rs = RelyingSystem(name=f"dvc-{event_id[:8]}", webhook_allowlist=allowlist, units=[], webhook_secret="s")
        s.add(rs)
        s.flush()
        s.add(WebhookDelivery(id=event_id, request_id="r-" + event_id[:8], relying_system_id=rs.id, url=url, body="{}",
                              state=DeliveryState.PENDING, attempts=0, next_attempt_at=now()))
    return event_id


def delivery(rt: Runtime, event_id: str) -> WebhookDelivery:
    with transaction(rt.sessions) as s:
        row = s.get(WebhookDelivery, event_id)
        assert row is not None
        s.expunge(row)
        return row


def tls_files(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (the receiver's, and the client's only trust anchor)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(timezone.utc) - timedelta(minutes=5))
            .not_valid_after(datetime.now(timezone.utc) + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "hook.pem", directory / "hook.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_delivery_connects_to_the_address_that_was_checked(db_runtime: Runtime, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers the check with an address taken as public (127.0.0.1 here)
    and any later lookup with an internal one (127.0.0.2, where an internal service listens)."""
    host = "hooks.kyso.test"
    cert, key = tls_files(tmp_path, host)
    receiver = WebhookReceiver()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    receiver.server.socket = tls.wrap_socket(receiver.server.socket, server_side=True)
    internal = socket.create_server(("127.0.0.2", receiver.port))
    reached: list[object] = []
    threading.Thread(target=lambda: reached.append(internal.accept()), daemon=True).start()

    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, port, *args, **kwargs)
        answers.append("127.0.0.1" if not answers else "127.0.0.2")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webhook_targets, "is_special", lambda ip: str(ip) != "127.0.0.1")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        event_id = queue(db_runtime, f"https://{host}:{receiver.port}/hooks/kyso",
                         [f"https://{host}:{receiver.port}/hooks"])
        assert webhooks.deliver_due(db_runtime.sessions, allow_private=False) == 1
        row = delivery(db_runtime, event_id)
        assert (row.state, row.last_error) == (DeliveryState.DELIVERED, None), row.last_error
        assert answers == ["127.0.0.1"]  # resolved once
        assert not reached
        assert len(receiver.calls) == 1
        [(headers, _)] = receiver.calls
        assert headers["Host"] == f"{host}:{receiver.port}"  # the name (and the TLS name), not the address
        assert headers["Kyso-Event-Id"] == event_id
    finally:
        internal.close()
        receiver.close()


@pytest.mark.parametrize(("url", "allowlist", "allow_private", "code"), [
    # Rows written before URLs were parsed: the allowlist was a string prefix.
    ("http://dvc.example@127.0.0.1:{port}/hook", ["http://dvc.example"], True, "invalid_webhook_url"),
    ("http://127.0.0.1:{port}\\@dvc.example/hook", ["http://127.0.0.1:{port}"], True, "invalid_webhook_url"),
    # The allowlist no longer holds the URL (it is read again at every attempt).
    ("http://127.0.0.1:{port}/hook", ["http://127.0.0.1:{port}/other"], True, "webhook_not_allowed"),
    ("http://127.0.0.1:{port}/hook", ["http://127.0.0.1:"], True, "webhook_not_allowed"),
    # Private targets once allowed, no longer.
    ("https://localhost:{port}/hook", ["https://localhost:{port}/hook"], False, "webhook_target_refused"),
    ("https://127.0.0.1:{port}/hook", ["https://127.0.0.1:{port}/hook"], False, "webhook_target_refused"),
    ("http://127.0.0.1:{port}/hook", ["http://127.0.0.1:{port}/hook"], False, "invalid_webhook_url"),
])
def test_delivery_checks_the_target_again(db_runtime: Runtime, receiver: WebhookReceiver, url: str,
                                          allowlist: list[str], allow_private: bool, code: str) -> None:
    port = receiver.port
    event_id = queue(db_runtime, url.format(port=port), [entry.format(port=port) for entry in allowlist])
    assert webhooks.deliver_due(db_runtime.sessions, allow_private=allow_private) == 1
    row = delivery(db_runtime, event_id)
    assert (row.state, row.attempts, row.last_error) == (DeliveryState.PENDING, 1, code)
    assert receiver.calls == []
