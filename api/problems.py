"""Errors as RFC 9457 problem details with a stable ``code``; never a secret or a trace."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from broker.errors_http import DomainError, status_for

PROBLEM = "application/problem+json"


def problem(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://kyso.invalid/problems/{code}", "title": code.replace("_", " "), "status": status,
         "detail": detail, "code": code},
        status_code=status,
        media_type=PROBLEM,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(400, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    for cls in DomainError:

        @app.exception_handler(cls)
        async def _domain(_: Request, exc: Exception) -> JSONResponse:
            return problem(status_for(exc), getattr(exc, "code", "error"), getattr(exc, "message", str(exc)))
