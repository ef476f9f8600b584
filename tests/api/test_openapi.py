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


def test_csc_bodies_are_documented(live_server: str) -> None:
    spec = httpx.get(f"{live_server}/openapi.json").json()
    for version in ("v1", "v2"):
        authorize = spec["paths"][f"/csc/{version}/credentials/authorize"]["post"]
        body = authorize["requestBody"]["content"]["application/json"]["schema"]
        assert {"credentialID", "hashes", "hash", "hashAlgo", "numSignatures"} <= set(body["properties"])
        sign = spec["paths"][f"/csc/{version}/signatures/signHash"]["post"]
        assert {"SAD", "signAlgo", "signAlgoParams"} <= set(sign["requestBody"]["content"]["application/json"]
                                                          ["schema"]["properties"])
        assert "429" in sign["responses"] and "503" in sign["responses"]
