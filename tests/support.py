"""Shared test helpers: independent verifiers and small builders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
from asn1crypto import pem

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


def relying_system_client(runtime: object, name: str, units: tuple[str, ...] = ("U001",),
                          scopes: list[str] | None = None) -> tuple[str, str]:
    """A relying system of its own serving ``units``, and a client of it: (client id, secret)."""
    from broker import clients
    from broker.db.engine import transaction
    from tests.conftest import ACTOR

    with transaction(runtime.sessions) as s:  # type: ignore[attr-defined]
        clients.add_relying_system(s, ACTOR, name, list(units))
        client, secret = clients.add_client(s, ACTOR, name, scopes)
        return client.client_id, secret


def bearer_http(base_url: str, client_id: str, secret: str) -> httpx.Client:
    """An HTTP client holding a fresh access token of that client."""
    from kyso_client import KysoClient

    token = KysoClient(base_url, client_id=client_id, client_secret=secret).access_token
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
