"""The OpenAPI document is what the server does: each operation's own errors, its security, its bodies."""

from __future__ import annotations

import httpx
import pytest

from api.openapi_errors import CSC_RAISES, RAISES


@pytest.fixture(scope="module")
def spec(live_server: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{live_server}/openapi.json").json()


def test_every_api_route_documents_its_errors(spec: dict) -> None:  # type: ignore[type-arg]
    for path, methods in spec["paths"].items():
        if not path.startswith(("/v1", "/csc", "/approve/api", "/oauth2")):
            continue
        for method, operation in methods.items():
            key = (method.upper(), path)
            if path.startswith("/approve/") and key not in RAISES:
                continue  # the approval page's newest calls keep the catch-all list until they are declared
            assert key in RAISES or path.startswith("/oauth2") or path[len("/csc/v1"):] in CSC_RAISES, \
                f"{key}: declare its errors in api.openapi_errors.RAISES"
            documented = set(operation["responses"])
            assert "400" in documented, key
            assert "422" not in documented or "invalid_document" in operation["responses"]["422"]["description"], key
            described = " ".join(r.get("description", "") for r in operation["responses"].values())
            assert "invalid" in described, key
            if method == "get":  # a GET carries no document
                assert "413" not in documented and "document_too_large" not in described, key
            if operation.get("security") and not path.startswith("/oauth2"):
                assert "401" in documented or "403" in documented, key
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # kyso answers 400 problems, never that


def test_errors_come_from_the_classes_each_route_raises(spec: dict) -> None:  # type: ignore[type-arg]
    create = spec["paths"]["/v1/requests"]["post"]["responses"]
    assert set(create) >= {"201", "400", "401", "403", "404", "409", "410", "413", "422", "429", "502"}
    assert "invalid_document" in create["422"]["description"]
    assert create["429"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    get = spec["paths"]["/v1/requests/{request_id}"]["get"]["responses"]
    assert set(get) == {"200", "400", "401", "404"}
    upload = spec["paths"]["/v1/documents"]["put"]
    assert "document_too_large" in upload["responses"]["413"]["description"]
    assert upload["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"


def test_security_schemes_replace_the_authorization_header(spec: dict) -> None:  # type: ignore[type-arg]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"] == "/oauth2/token"
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            names = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}
            assert "authorization" not in names, (method, path)
    assert {"oauth2": []} in spec["paths"]["/v1/credentials"]["get"]["security"]
    assert "security" not in spec["paths"]["/csc/v2/info"]["post"]
    token = spec["paths"]["/oauth2/token"]["post"]
    assert set(token["responses"]["200"]["content"]["application/json"]["schema"].values()) == {
        "#/components/schemas/TokenOut"}
    assert {"access_token", "expires_in"} <= set(spec["components"]["schemas"]["TokenOut"]["required"])


def test_csc_bodies_are_documented(spec: dict) -> None:  # type: ignore[type-arg]
    for version in ("v1", "v2"):
        authorize = spec["paths"][f"/csc/{version}/credentials/authorize"]["post"]
        body = authorize["requestBody"]["content"]["application/json"]["schema"]
        assert {"credentialID", "hashes", "hash", "hashAlgo", "numSignatures"} <= set(body["properties"])
        assert "429" in authorize["responses"]
        sign = spec["paths"][f"/csc/{version}/signatures/signHash"]["post"]
        assert {"SAD", "signAlgo", "signAlgoParams"} <= set(sign["requestBody"]["content"]["application/json"]
                                                          ["schema"]["properties"])
        assert "503" in sign["responses"] and "expired_token" in sign["responses"]["400"]["description"]
        assert sign["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/CscError"}


def test_index_unknown_routes_and_the_csc_logo(live_server: str) -> None:
    index = httpx.get(f"{live_server}/")
    assert index.status_code == 200 and index.json()["links"]["docs"].endswith("/docs")
    missing = httpx.get(f"{live_server}/no/such/route")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    logo_url = httpx.post(f"{live_server}/csc/v2/info", json={}).json()["logo"]
    logo = httpx.get(live_server + logo_url[logo_url.index("/static/"):])
    assert logo.status_code == 200 and logo.headers["content-type"] == "image/png"
    assert logo.content.startswith(b"\x89PNG")


def test_the_token_endpoint_answers_oauth_errors(live_server: str) -> None:
    missing = httpx.post(f"{live_server}/oauth2/token", data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert missing.headers["cache-control"] == "no-store"


def test_the_sections_keep_their_order_whatever_the_routers_order(spec: dict) -> None:  # type: ignore[type-arg]
    # The routers are included hottest first (a call is matched in that order); the reader's order is the tags'.
    names = [tag["name"] for tag in spec["tags"]]
    assert names[:2] == ["operations", "approval devices"] and names[-2:] == ["CSC 1.0.4.0", "CSC 2.0.0.2"]
    used = {tag for methods in spec["paths"].values() for operation in methods.values()
            for tag in operation.get("tags", [])}
    assert used <= set(names), f"tags missing from api.app.OPENAPI_TAGS: {used - set(names)}"
