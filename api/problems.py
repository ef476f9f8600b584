"""Errors as RFC 9457 problem details with a stable ``code``; never a secret or a trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from broker.errors_http import DomainError, status_for

PROBLEM = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    type: str
    title: str
    status: int
    detail: str
    code: str


class CscError(BaseModel):
    """The CSC API's error body."""

    error: str
    error_description: str


class OAuthError(BaseModel):
    """The token endpoint's error body (RFC 6749 §5.2)."""

    error: str
    error_description: str


def _described(model: type[BaseModel], codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": text} for status, text in codes.items()}


# The routers' catch-all lists: api.openapi_errors replaces them, per operation, with what it can answer.
PROBLEM_RESPONSES = _described(Problem, {
    400: "invalid_request, invalid_input, invalid_hash, unsupported_algorithm, invalid_parameters",
    401: "invalid_token, not_signed_in",
    403: "insufficient_scope, confirmation_invalid, confirmation_replayed, credential_locked, device_not_active, "
         "activation_refused, policy_violation, too_many_pending_requests, certificate_revoked, credential_not_usable",
    404: "not_found (also anything outside the caller's units)",
    409: "conflict, request_not_pending, idempotency_key_reused, not_authorised, confirmed_at_provider",
    410: "request_expired, document_gone (the document's file is no longer stored)",
    413: "document_too_large, body_too_large (a JSON body over KYSO_MAX_JSON_BYTES: upload documents)",
    422: "invalid_document (not a PDF, encrypted, damaged)",
    429: "rate_limited, too_many_pending (with Retry-After)",
    502: "provider_unavailable, provider_api_error (a delegated credential's provider)",
    503: "hsm_token_missing, hsm_device_error",
})
CSC_RESPONSES = _described(CscError, {
    400: "invalid_request, expired_token", 401: "invalid_token", 403: "access_denied",
    429: "too_many_requests (with Retry-After)", 503: "temporarily_unavailable",
})


DETAIL_MAX = 240
"""Longest error text: a message quoting the caller's input (an id, a name) quotes little of it."""


def capped(text: str, limit: int = DETAIL_MAX) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://kyso.invalid/problems/{code}", "title": code.replace("_", " "), "status": status,
         "detail": capped(detail), "code": code},
        status_code=status,
        media_type=PROBLEM,
    )


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """The token endpoint's error answer (RFC 6749 §5.2): its own body, never cached."""
    return JSONResponse({"error": error, "error_description": capped(description)}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The place and the rule, never the input (a location may hold a caller's key: it is cut short too).
        first = exc.errors()[0] if exc.errors() else {}
        where = capped(".".join(str(p) for p in first.get("loc", ())), 80)
        detail = f"{where}: {capped(str(first.get('msg', 'invalid request')), 150)}"
        if request.url.path.startswith("/oauth2/"):
            return oauth_error(400, "invalid_request", detail)
        return problem(400, "invalid_request", detail)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        # The framework's own refusals (no route, wrong method, a body it could not parse) as problems too.
        response = problem(exc.status_code, _HTTP_CODES.get(exc.status_code, "invalid_request"), str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    for cls in DomainError:

        @app.exception_handler(cls)
        async def _domain(_: Request, exc: Exception) -> JSONResponse:
            response = problem(status_for(exc), getattr(exc, "code", "error"), getattr(exc, "message", str(exc)))
            if hasattr(exc, "retry_after"):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
