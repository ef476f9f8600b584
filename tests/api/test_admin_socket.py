"""The admin socket's routing and routes, in process (the sandbox test drives it over a real socket)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.admin import AdminSocketRouting, create_admin_app
from biometrics import Decision
from broker import admin_socket, approvals, credentials
from broker.db.engine import transaction
from broker.db.models import SigningRequest
from broker.lifecycle import signing_requests
from broker.runtime import Runtime
from tests.conftest import ACTOR, Enrolled


def _routed(router: AdminSocketRouting, server: Any) -> str:
    seen: list[str] = []

    def app(name: str) -> Any:
        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            seen.append(name)
        return asgi

    router.app, router.admin = app("api"), app("admin")
    asyncio.run(router({"type": "http", "server": server}, None, None))  # type: ignore[arg-type]
    return seen[0]


def test_only_the_data_dirs_own_socket_reaches_the_admin_routes(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    router = AdminSocketRouting(None, None, path)  # type: ignore[arg-type]
    assert _routed(router, (str(path), None)) == "admin"
    assert _routed(router, ("127.0.0.1", 8400)) == "api"  # TCP, whatever the proxy headers say
    assert _routed(router, (str(tmp_path / "nginx.sock"), None)) == "api"  # the API on another Unix socket
    assert _routed(AdminSocketRouting(None, None, None), (str(path), None)) == "api"  # type: ignore[arg-type]


def test_the_cli_trusts_only_its_own_socket(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text('{"admin_socket": "/tmp/elsewhere.sock"}')
    assert admin_socket.connect(tmp_path) is None  # a path from the file is never followed
    (tmp_path / "admin.sock").write_text("not a socket")
    (tmp_path / "server.json").write_text(f'{{"admin_socket": "{tmp_path / "admin.sock"}"}}')
    assert admin_socket.connect(tmp_path) is None
    bound = admin_socket.bind(tmp_path)  # a stale file is replaced by a 0600 socket
    assert bound is not None and oct(os.stat(tmp_path / "admin.sock").st_mode & 0o777) == "0o600"
    try:
        client = admin_socket.connect(tmp_path)
        assert client is not None
        client.close()
        assert admin_socket.bind(tmp_path) is None  # a live socket of ours: the other server keeps it
    finally:
        admin_socket.unbind(bound, tmp_path)
    assert not (tmp_path / "admin.sock").exists()
    deep = tmp_path / ("d" * 120)
    assert admin_socket.socket_path(deep) is None and admin_socket.bind(deep) is None


def test_the_admin_sign_route_refuses_a_relying_systems_request(runtime: Runtime, enrolled: Enrolled) -> None:
    with transaction(runtime.sessions) as s:
        credential = credentials.get_credential(s, enrolled.ec)
        request = signing_requests.create(s, runtime.settings, ACTOR, credential,
                                  [signing_requests.DocumentToSign(hashlib.sha256(b"rs").digest(), "UNC")], relying_system="dvc",
                                  provider=runtime.ca(credential.provider))
        approvals.apply_decision(s, ACTOR, request, Decision.APPROVE, via="test", evidence={})
        s.execute(update(SigningRequest).where(SigningRequest.id == request.id).values(client_id="dvc-client"))
        rid = request.id
    with TestClient(create_admin_app(runtime)) as admin:
        refused = admin.post(f"/admin/v1/requests/{rid}/sign")
        assert refused.status_code == 403 and refused.json()["code"] == "policy_violation"
        assert admin.post("/admin/v1/requests/no-such/sign").json()["code"] in ("not_found", "not_authorised")
        relative = admin.post("/admin/v1/unconfirmed-signatures", json={
            "credential_id": enrolled.ec, "input_path": "in.txt", "output_path": "out.p7s", "format": "cades",
            "spec": {"enveloping": False}})
        assert relative.status_code == 400 and relative.json()["code"] == "invalid_input"
        bad = admin.post("/admin/v1/audit/exports", json={"output_path": "relative.jsonl"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
        nowhere = admin.post("/admin/v1/audit/exports", json={"output_path": "/nonexistent-dir/x.jsonl"})
        assert nowhere.status_code == 400 and not Path("/nonexistent-dir/x.jsonl.part").exists()
    with transaction(runtime.sessions) as s:
        assert signing_requests.get(s, rid).state.value == "approved"  # nothing signed

