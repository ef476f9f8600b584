"""``kyso sandbox`` as integrators start it: a subprocess, sandbox.json, a signature, SIGTERM."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kyso_client import KysoClient
from tests.support import REPO

KEYS = {"base_url", "access_token", "client_id", "client_secret", "token_url", "trust_anchors", "credentials",
        "manual_approval"}


def test_sandbox_start_sign_and_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "sandbox"
    log = tmp_path / "sandbox.log"  # a file, not a pipe: the sandbox logs every request, and a full pipe blocks it
    process = subprocess.Popen([sys.executable, "-m", "kyso.cli", "sandbox", "--data-dir", str(data_dir),
                                "--port", "0"], cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        described = data_dir / "sandbox.json"
        deadline = time.monotonic() + 240
        while not described.exists():
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "the sandbox did not become ready"
            time.sleep(0.5)
        info = json.loads(described.read_text())
        assert set(info) == KEYS
        assert oct(described.stat().st_mode & 0o777) == "0o600"
        assert info["base_url"].startswith("http://localhost:") and not info["base_url"].endswith("/")
        assert info["token_url"] == info["base_url"] + "/oauth2/token"
        assert {c["key_algo"] for c in info["credentials"]} == {"rsa-2048", "rsa-3072", "ec-p256"}
        assert {c["ca"] for c in info["credentials"]} == {"viettel", "vnpt", "misa", "nacencomm"}
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in info["trust_anchors"])

        client = KysoClient(info["base_url"], access_token=info["access_token"])
        ec_credential = next(c for c in info["credentials"] if c["key_algo"] == "ec-p256")["credential_id"]
        digest = hashlib.sha256(b"sandbox").digest()
        auth = client.authorize(ec_credential, [digest])  # approved by the simulated phone
        [signature] = client.sign_hash(ec_credential, auth.sad, [digest], "1.2.840.10045.4.3.2")
        cert_der = __import__("base64").b64decode(client.credential_info(ec_credential)["cert"]["certificates"][0])
        public = x509.load_der_x509_certificate(cert_der).public_key()
        from cryptography.hazmat.primitives.asymmetric import utils

        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))  # type: ignore[call-arg,union-attr]
        assert KysoClient(info["base_url"], client_id=info["client_id"], client_secret=info["client_secret"]).access_token

        # The CLI enrolls on the same data dir while the server signs (its own process, its own single login).
        errors: list[BaseException] = []
        stop = threading.Event()
        signed = [0]

        def keep_signing() -> None:
            try:
                while not stop.is_set():
                    d = hashlib.sha256(str(signed[0]).encode()).digest()
                    a = client.authorize(ec_credential, [d])
                    client.sign_hash(ec_credential, a.sad, [d], "1.2.840.10045.4.3.2")
                    signed[0] += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        signer = threading.Thread(target=keep_signing)
        signer.start()
        enrolled = subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), "cert", "enroll",
                                   "--user", "sbx.chutk", "--ca", "misa", "--key", "ec-p256"], cwd=REPO,
                                  capture_output=True, text=True, timeout=240)
        time.sleep(1)
        stop.set()
        signer.join(timeout=60)
        assert enrolled.returncode == 0, enrolled.stderr
        assert "through the running server" in enrolled.stdout  # the server's token session
        assert not errors and signed[0] > 0
        assert len(client.credentials("sbx.chutk")) == 3
        _admin_socket_checks(data_dir, info["base_url"], tmp_path)
        _, _, der = pem.unarmor(Path(info["trust_anchors"][0]).read_bytes())
        assert x509.load_der_x509_certificate(der).subject == x509.load_der_x509_certificate(der).issuer
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 0
    assert not (data_dir / "sandbox.json").exists()
    assert not (data_dir / "server.json").exists() and not (data_dir / "admin.sock").exists()
    # No server now: the CLI opens the token itself, and the chain holds what went through the socket.
    verified = _kyso(data_dir, "audit", "verify")
    assert verified.returncode == 0 and "through the running server" not in verified.stdout, verified.stdout
    events = _kyso(data_dir, "audit", "list", "--action", "credential.enroll", "--limit", "1").stdout
    assert "cli:" in events


def _kyso(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kyso.cli", "--data-dir", str(data_dir), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=240)


def _admin_socket_checks(data_dir: Path, base_url: str, tmp_path: Path) -> None:
    """The admin socket: named in server.json, 0600, never reachable over TCP; the CLI's HSM work goes through it."""
    import httpx

    from tests.support import openssl_cms_verify

    server = json.loads((data_dir / "server.json").read_text())
    sock = Path(server["admin_socket"])
    assert server["url"] == base_url and oct(sock.stat().st_mode & 0o777) == "0o600"
    assert httpx.get(f"{base_url}/admin/v1/ping").status_code == 404
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as local:
        assert local.get("http://kyso/admin/v1/ping").json()["data_dir"] == str(data_dir.resolve())
        assert local.get("http://kyso/v1/credentials").status_code == 404  # the socket serves only the admin routes

    content = tmp_path / "order.xml"
    content.write_text("<order>1</order>")
    signed = _kyso(data_dir, "sign", str(content), "-o", str(tmp_path / "order.p7s"), "--user", "sbx.ketoan",
                   "--format", "cades")  # confirmed by the simulated phone, signed by the server
    assert signed.returncode == 0, signed.stdout + signed.stderr
    root = Path(json.loads((data_dir / "sandbox.json").read_text())["trust_anchors"][0])
    assert openssl_cms_verify(tmp_path / "order.p7s", root, content).returncode == 0
    checkpoint = _kyso(data_dir, "audit", "checkpoint")
    assert checkpoint.returncode == 0 and "through the running server" in checkpoint.stdout, checkpoint.stdout
    refused = _kyso(data_dir, "cert", "renew", "no-such-credential")
    assert refused.returncode == 2 and "[not_found]" in refused.stdout + refused.stderr
    backed_up = _kyso(data_dir, "backup", str(tmp_path / "backup"))  # its checkpoint signed by the server
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    assert json.loads((tmp_path / "backup" / "manifest.json").read_text())["anchor"]["head_id"] > 0
    no_restore = _kyso(data_dir, "restore", str(tmp_path / "backup"), "--force")
    assert no_restore.returncode == 2 and "[policy_violation]" in no_restore.stdout + no_restore.stderr
