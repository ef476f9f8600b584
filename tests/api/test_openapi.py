"""The OpenAPI document lists every route with its error responses and their stable codes."""

from __future__ import annotations

import httpx


def test_every_api_route_documents_its_errors(live_server: str) -> None:
    spec = httpx.get(f"{live_server}/openapi.json").json()
    for path, methods in spec["paths"].items():
        if not path.startswith(("/v1", "/csc", "/approve/api")):
            continue
        for method, operation in methods.items():
            documented = set(operation["responses"])
            assert {"400", "401", "403"} <= documented, (method, path)
            described = " ".join(r.get("description", "") for r in operation["responses"].values())
            assert "invalid" in described, (method, path)
