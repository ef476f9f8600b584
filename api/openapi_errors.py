"""The OpenAPI document as the server behaves: each operation's errors, its security, no phantom answers.

``RAISES`` is the one place that says which errors each operation can give: the domain error
classes its code raises, and the refusals no class stands for (a request FastAPI could not read,
a body over the JSON bound). Each class's status is the one its handler answers with
(:func:`broker.errors_http.status_for`; for the CSC routes :func:`api.csc.translate`, which also
gives the CSC ``error`` value), so the document cannot drift from the answers. :func:`install`
serves a document where they replace the routers' catch-all lists, that names the security schemes,
and that leaves out FastAPI's 422 ``HTTPValidationError``, which kyso never sends (a request it
cannot read is a 400 ``invalid_request``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api import csc
from api.body_limits import BodyRefused
from api.problems import PROBLEM, CscError, OAuthError, Problem
from biometrics import BadProof, ConfirmationError, ReplayedCounter
from broker.approvals import ActivationRefused, ConfirmedAtProvider, DeviceNotActive, RequestExpired
from broker.approvals.authenticators import NotSignedIn, OriginRefused
from broker.clients import InsufficientScope, InvalidToken
from broker.credentials.delegated import ProviderUnavailable
from broker.csc import AccessDenied, SadExpired, SadInvalid
from broker.errors import (
    CredentialNotUsable,
    DocumentGone,
    InvalidInput,
    InvalidText,
    NotFound,
    PolicyViolation,
    UnitInUsbTokenMode,
)
from broker.errors_http import status_for
from broker.lifecycle.load_limits import RateLimited, TooManyPendingForSystem, UploadQuotaExceeded
from broker.lifecycle.signing_requests import CredentialLocked, RequestNotPending, TooManyPending
from broker.lifecycle.submissions import IdempotencyConflict
from broker.lifecycle.uploads import DocumentTooLarge
from broker.lifecycle.webhook_targets import InvalidWebhookUrl, WebhookNotAllowed, WebhookTargetRefused
from broker.timestamping import TimestampNotOffered, TsaUnavailable
from ca_adapters.remote_signing import ProviderApiError
from hsm import DeviceError, TokenMissing
from signer.errors import (
    CertificateRevoked,
    InvalidDocument,
    InvalidFieldPlace,
    InvalidHash,
    InvalidParameters,
    InvalidStamp,
    UnsupportedAlgorithm,
)
from signer.ltv import UnsupportedLevel


@dataclass(frozen=True)
class Refusal:
    """An answer no domain class stands for: the framework's, a body limit's, or a route's own."""

    status: int
    code: str


UNREADABLE = Refusal(400, "invalid_request")
"""A parameter or body that does not match the operation, or a NUL in the URL, a cookie or the body."""
BODY_TOO_LARGE = Refusal(413, "body_too_large")
"""A JSON body over ``KYSO_MAX_JSON_BYTES`` (documents are uploaded with ``PUT /v1/documents``)."""

Error = type[Exception] | Refusal

_CLIENT: tuple[Error, ...] = (UNREADABLE, InvalidToken)
_JSON_BODY: tuple[Error, ...] = (UNREADABLE, BODY_TOO_LARGE)
_DEVICE: tuple[Error, ...] = (UNREADABLE, DeviceNotActive)
_PAGE: tuple[Error, ...] = (*_JSON_BODY, OriginRefused)  # every state-changing call of the approval page
_DECISION: tuple[Error, ...] = (NotFound, RequestNotPending, RequestExpired, ConfirmedAtProvider)
_CSC: tuple[Error, ...] = (InvalidInput, BodyRefused, InvalidToken)

RAISES: dict[tuple[str, str], tuple[Error, ...]] = {
    # -- the native REST API ------------------------------------------------------------------------------
    ("GET", "/v1/credentials"): _CLIENT,
    ("PUT", "/v1/documents"): (*_CLIENT, InsufficientScope, InvalidInput, DocumentTooLarge, RateLimited,
                               UploadQuotaExceeded),
    ("POST", "/v1/requests"): (
        *_CLIENT, BODY_TOO_LARGE, InsufficientScope, InvalidInput, InvalidText, InvalidHash, UnsupportedAlgorithm,
        InvalidParameters, UnsupportedLevel, InvalidWebhookUrl, WebhookNotAllowed, WebhookTargetRefused, NotFound,
        IdempotencyConflict, PolicyViolation, UnitInUsbTokenMode, CredentialNotUsable, CertificateRevoked,
        TooManyPending, CredentialLocked, DocumentGone, InvalidDocument, InvalidStamp, InvalidFieldPlace, RateLimited,
        TooManyPendingForSystem, ProviderUnavailable, ProviderApiError),
    ("POST", "/v1/requests/with-documents"): (
        *_CLIENT, InsufficientScope, InvalidInput, InvalidText, UnsupportedLevel, InvalidWebhookUrl, WebhookNotAllowed,
        WebhookTargetRefused, NotFound, IdempotencyConflict, PolicyViolation, UnitInUsbTokenMode, CredentialNotUsable,
        CertificateRevoked, TooManyPending, CredentialLocked, InvalidDocument, DocumentTooLarge, RateLimited,
        TooManyPendingForSystem, UploadQuotaExceeded, ProviderUnavailable, ProviderApiError),
    ("GET", "/v1/requests/{request_id}"): (*_CLIENT, NotFound),
    ("GET", "/v1/requests/{request_id}/documents/{position}"): (*_CLIENT, NotFound, DocumentGone),
    ("GET", "/v1/requests/{request_id}/webhooks"): (*_CLIENT, NotFound),
    ("POST", "/v1/requests/{request_id}/cancel"): (*_CLIENT, InsufficientScope, NotFound, RequestNotPending),
    ("POST", "/v1/validations"): (*_CLIENT, InvalidInput, Refusal(400, "content_required"), PolicyViolation,
                                  Refusal(413, "document_too_large"), Refusal(422, "invalid_document"),
                                  Refusal(503, "invalid_trust_store")),
    # -- approval devices (a phone's token, not a relying system's) ---------------------------------------
    ("POST", "/v1/devices/enroll"): (*_JSON_BODY, InvalidInput, ActivationRefused),
    ("GET", "/v1/devices/me/requests"): _DEVICE,
    ("POST", "/v1/devices/me/requests/{request_id}/decision"): (
        *_DEVICE, BODY_TOO_LARGE, InvalidInput, ConfirmationError, BadProof, ReplayedCounter, *_DECISION),
    # -- the approval page's calls (a session cookie) -----------------------------------------------------
    ("POST", "/approve/api/register/options"): (*_PAGE, ActivationRefused),
    ("POST", "/approve/api/register/verify"): (*_PAGE, InvalidInput, ActivationRefused, ConfirmationError),
    ("POST", "/approve/api/login/options"): (*_PAGE, NotFound),
    ("POST", "/approve/api/login/verify"): (*_PAGE, InvalidInput, NotSignedIn, ConfirmationError),
    ("POST", "/approve/api/logout"): _PAGE,
    ("GET", "/approve/api/requests"): (UNREADABLE, NotSignedIn),
    ("POST", "/approve/api/requests/{request_id}/options"): (*_PAGE, NotSignedIn, *_DECISION),
    ("POST", "/approve/api/requests/{request_id}/approve"): (*_PAGE, NotSignedIn, ConfirmationError, *_DECISION),
    ("POST", "/approve/api/requests/{request_id}/refuse"): (*_PAGE, NotSignedIn, *_DECISION),
}
"""Per operation, what it can answer besides success."""

CSC_RAISES: dict[str, tuple[Error, ...]] = {
    "/info": (InvalidInput, BodyRefused),
    "/credentials/list": _CSC,
    "/credentials/info": (*_CSC, NotFound),
    "/credentials/authorize": (*_CSC, InvalidText, NotFound, InsufficientScope, AccessDenied, PolicyViolation,
                               RateLimited),
    "/signatures/signHash": (*_CSC, NotFound, InsufficientScope, SadExpired, SadInvalid, InvalidHash,
                             UnsupportedAlgorithm, InvalidParameters, PolicyViolation, TokenMissing, DeviceError),
    "/signatures/timestamp": (*_CSC, InsufficientScope, TimestampNotOffered, TsaUnavailable),
}
"""The CSC operations, the same under ``/csc/v1`` and ``/csc/v2``."""

OAUTH_ERRORS = {400: ("invalid_request", "unsupported_grant_type", "invalid_scope"), 401: ("invalid_client",),
                413: ("invalid_request",)}
"""``/oauth2/token``'s answers (RFC 6749 §5.2), in its own body format."""


def _sample(cls: type[Exception]) -> Exception:
    """An instance to ask the handlers about (their status depends on the class and its code only)."""
    if issubclass(cls, BodyRefused):
        return BodyRefused(413, "body_too_large", "")
    if issubclass(cls, RateLimited):
        return cls("", 1)
    return cls("")


def problem_answer(error: Error) -> tuple[int, str]:
    """The status and ``code`` of the problem details a REST route answers ``error`` with."""
    if isinstance(error, Refusal):
        return error.status, error.code
    return status_for(_sample(error)), str(getattr(error, "code", "error"))


def csc_answer(error: Error) -> tuple[int, str]:
    """The status and ``error`` value of the CSC body a CSC route answers ``error`` with."""
    if isinstance(error, Refusal):
        return error.status, error.code
    response = csc.translate(_sample(error))
    return response.status_code, json.loads(bytes(response.body))["error"]


def _by_status(answers: Iterable[tuple[int, str]]) -> dict[int, list[str]]:
    codes: dict[int, list[str]] = defaultdict(list)
    for status, code in answers:
        if code not in codes[status]:
            codes[status].append(code)
    return dict(sorted(codes.items()))


def _responses(codes: dict[int, list[str]], media_type: str, schema: str, name: str) -> dict[int | str, Any]:
    return {status: {"description": f"{name}: {', '.join(found)}",
                     "content": {media_type: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
            for status, found in codes.items()}


def problem_responses(errors: Iterable[Error]) -> dict[int | str, Any]:
    """``responses=`` for a REST route raising ``errors``: problem details, their codes per status."""
    return _responses(_by_status(map(problem_answer, errors)), PROBLEM, "Problem", "code")


def csc_responses(errors: Iterable[Error]) -> dict[int | str, Any]:
    """``responses=`` for a CSC route raising ``errors``: CSC error bodies, their ``error`` values per status."""
    return _responses(_by_status(map(csc_answer, errors)), "application/json", "CscError", "error")


def oauth_responses() -> dict[int | str, Any]:
    return _responses({s: list(c) for s, c in OAUTH_ERRORS.items()}, "application/json", "OAuthError", "error")


def responses_for(method: str, path: str) -> dict[int | str, Any] | None:
    """The documented errors of one operation; None for one ``RAISES`` does not know."""
    if path == "/oauth2/token":
        return oauth_responses()
    if path.startswith(("/csc/v1/", "/csc/v2/")) and method == "POST":
        errors = CSC_RAISES.get(path[len("/csc/v1"):])
        return csc_responses(errors) if errors is not None else None
    errors = RAISES.get((method, path))
    return problem_responses(errors) if errors is not None else None


# -- security -------------------------------------------------------------------------------------------

SECURITY_SCHEMES = {
    "oauth2": {"type": "oauth2", "description": "A relying system's client: client id and secret for a bearer token.",
               "flows": {"clientCredentials": {"tokenUrl": "/oauth2/token", "scopes": {
                   "sign": "create and cancel signing requests, upload documents, CSC authorize and sign",
                   "read": "read credentials and requests"}}}},
    "bearer": {"type": "http", "scheme": "bearer", "description": "An access token from /oauth2/token."},
    "device": {"type": "http", "scheme": "bearer", "description": "An approval device's token (kyso phone)."},
    "clientBasic": {"type": "http", "scheme": "basic",
                    "description": "The client id and secret (or give them as the form's client_id, client_secret)."},
}
_RELYING_SYSTEM = [{"oauth2": []}, {"bearer": []}]


def _security(method: str, path: str) -> list[dict[str, list[str]]] | None:
    if path == "/oauth2/token":
        return [{"clientBasic": []}, {}]
    if path.startswith("/v1/devices/me/"):
        return [{"device": []}]
    if path.startswith("/csc/"):
        return None if path.endswith("/info") else _RELYING_SYSTEM
    if path.startswith("/v1/") and not path.startswith("/v1/devices/"):
        return _RELYING_SYSTEM
    return None


def _document(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                       openapi_version=app.openapi_version, tags=app.openapi_tags, servers=app.servers)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, CscError, OAuthError):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # kyso answers a request it cannot read with a 400 problem
    spec["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            errors = responses_for(method.upper(), path)
            if errors is not None:  # the routers' catch-all lists give way to what this operation answers
                operation["responses"] = {**{k: v for k, v in operation["responses"].items() if not _is_error(k)},
                                          **{str(k): v for k, v in errors.items()}}
            elif operation.get("responses", {}).get("422", {}).get("description") == "Validation Error":
                del operation["responses"]["422"]
            security = _security(method.upper(), path)
            if security is not None:  # the credentials are the scheme's, not an optional header parameter
                operation["security"] = security
                operation["parameters"] = [p for p in operation.get("parameters", [])
                                           if not (p["in"] == "header" and p["name"].lower() == "authorization")]
                if not operation["parameters"]:
                    del operation["parameters"]
    return spec


def _is_error(status: int | str) -> bool:
    return str(status)[0] in "45"


def install(app: FastAPI) -> None:
    """Serve the corrected document (built once, on first request, when every router is included)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
