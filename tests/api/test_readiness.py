"""Operations: readiness follows the database and the HSM token, and reports the
providers without depending on them. Real servers, real token."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from broker.runtime import Runtime
from broker.settings import Settings
from ca_adapters.emulator.server import EmulatorSet
from hsm import Hsm
from hsm.store import token_store_dir
from tests.api.conftest import Served
from tests.private_postgres import PrivatePostgres
from tests.support import eventually

# -- readiness and the database, in this process (the session's token) -------------------------------


def _readyz(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_readyz_follows_an_sqlite_database(settings: Settings, hsm: Hsm, tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    runtime = Runtime(settings.model_copy(update={"database_url": f"sqlite:///{missing / 'kyso.db'}"}), hsm=hsm)
    client = TestClient(create_app(runtime))  # no lifespan: no signing worker on this runtime
    try:
        status, body = _readyz(client)
        assert status == 503 and body["checks"]["database"].startswith("down: ") and body["checks"]["hsm"] == "ok"
        missing.mkdir()
        status, body = _readyz(client)
        assert status == 200 and body["ready"] is True
    finally:
        runtime.engine.dispose()


def test_readyz_follows_a_private_postgresql_cluster(settings: Settings, hsm: Hsm) -> None:
    cluster = PrivatePostgres()
    runtime: Runtime | None = None
    try:
        cluster.start()
        runtime = Runtime(settings.model_copy(update={"database_url": cluster.url}), hsm=hsm)
        client = TestClient(create_app(runtime))
        assert _readyz(client)[0] == 200
        cluster.stop()
        status, body = _readyz(client)
        assert status == 503 and body["checks"]["database"].startswith("down: ") and body["checks"]["hsm"] == "ok"
        cluster.start()
        assert eventually(lambda: _readyz(client)[0] == 200, timeout=10)
    finally:
        if runtime is not None:
            runtime.engine.dispose()
        cluster.remove()


# -- a server in its own process (the ``served`` fixture) ------------------------------------------------


def test_readyz_reports_providers_without_depending_on_them(served: Served) -> None:
    response = httpx.get(f"{served.url}/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["checks"] == {"database": "ok", "hsm": "ok"}
    assert set(body["providers"]) == {"misa", "nacencomm", "viettel", "vnpt"}
    assert all(p["tsa"].startswith("down: ") and p["ocsp"].startswith("down: ") for p in body["providers"].values())

    def vnpt() -> dict[str, Any]:
        response = httpx.get(f"{served.url}/readyz")
        assert response.status_code == 200  # a provider never makes the node unready
        return response.json()["providers"]["vnpt"]  # type: ignore[no-any-return]

    emulators = EmulatorSet(served.data_dir / "pki", ["vnpt"]).start()
    try:
        assert eventually(lambda: vnpt() == {"tsa": "ok", "ocsp": "ok"}, timeout=10), vnpt()
        emulators.state("vnpt").outages = {"tsa"}
        assert eventually(lambda: vnpt() == {"tsa": "down: HTTP 503", "ocsp": "ok"}, timeout=10), vnpt()
    finally:
        emulators.stop()


def test_readyz_turns_503_when_the_token_is_missing_and_200_when_it_is_back(served: Served,
                                                                          tmp_path: Path) -> None:
    [token_dir] = (token_store_dir(served.data_dir) / "tokens").iterdir()
    away = tmp_path / "token-away"
    shutil.move(str(token_dir), str(away))
    try:
        response = httpx.get(f"{served.url}/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["checks"] == {"database": "ok", "hsm": "down: hsm_token_missing"}
        time.sleep(1.0)  # a few recovery attempts fail meanwhile
        assert httpx.get(f"{served.url}/readyz").status_code == 503
    finally:
        shutil.move(str(away), str(token_dir))
    assert eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200, timeout=20)
    assert httpx.get(f"{served.url}/readyz").json()["checks"]["hsm"] == "ok"
    assert any("HSM token recovered" in line for line in served.log.read_text().splitlines())
