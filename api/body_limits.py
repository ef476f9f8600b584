"""Limits before parsing: a request is bounded, and refused before its body is read when it cannot succeed.

A plain ASGI middleware in front of the routes:

- a NUL in the path, the query or a cookie is refused at once (PostgreSQL refuses NUL in text);
- a body sent without the credentials its route needs is refused before it is read (FastAPI
  reads a model's body before the route's dependencies run, so this is the only place to do it);
- a body declared larger than ``max_json_bytes`` is refused before it is read; one sent in chunks
  is counted as it arrives and refused once past the bound, so memory stays flat;
- a complete body is checked before any parser sees it: no NUL (raw, ``\\u0000`` or ``%00``), no
  lone surrogate escape (text no database can store), JSON nested at most ``MAX_JSON_DEPTH`` deep.

Documents are not JSON: ``PUT /v1/documents`` streams to disk under its own bound.
"""

from __future__ import annotations

import re

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from broker import clients
from broker.db.engine import read_connection
from broker.runtime import Runtime

MAX_JSON_DEPTH = 32
"""Deepest nesting of a JSON body: the deepest kyso reads (a WebAuthn credential) is 4."""

_STREAMED = frozenset({("PUT", "/v1/documents"), ("POST", "/v1/validations"), ("POST", "/v1/requests/with-documents")})
_PUBLIC = ("/v1/devices/enroll",)
_IN_A_THREAD = 64 * 1024
"""A body larger than this is checked in a worker thread, not in the event loop."""

# Possessive throughout: linear time whatever the body (an unterminated string runs to the end).
_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.S)
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")
_INNERMOST = re.compile(rb"\[\]|\{\}")
_ESCAPE = rb"(?<!\\)(?:\\\\)*+\\u"  # a \u escape: the backslash before it is not itself escaped
_NUL_ESCAPE = re.compile(_ESCAPE + rb"0000")
_LONE_HIGH = re.compile(_ESCAPE + rb"[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_LOW = re.compile(rb"(?<![\\]u[dD][89abAB][0-9a-fA-F]{2})" + _ESCAPE + rb"[dD][c-fC-F][0-9a-fA-F]{2}")


class BodyRefused(HTTPException):
    """Raised from ``receive`` while a route reads its body: FastAPI passes it on to its handler."""

    def __init__(self, status_code: int, code: str, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code


def too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, "body_too_large", f"the request body is larger than {limit} bytes; "
                                              f"documents are uploaded with PUT /v1/documents")


def refusal_in_url(scope: Scope) -> BodyRefused | None:
    """A NUL anywhere the routes read text from besides the body."""
    if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
        return BodyRefused(400, "invalid_request", "the URL holds a NUL character")
    for name, value in scope["headers"]:
        if name == b"cookie" and any("\x00" in v for v in cookie_parser(value.decode("latin-1")).values()):
            return BodyRefused(400, "invalid_request", "a cookie holds a NUL character")
    return None


def refusal_in_body(body: bytes, content_type: str, json_expected: bool) -> BodyRefused | None:
    """What no route can accept in a complete body, found without parsing it."""
    if b"\x00" in body:
        return BodyRefused(400, "invalid_request", "the body holds a NUL byte")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return BodyRefused(400, "invalid_request", "a form field holds a NUL character") if b"%00" in body else None
    if not json_expected:
        return None
    if b"\\u" in body:  # only a \u escape can spell these; base64 and plain text have none
        if _NUL_ESCAPE.search(body):
            return BodyRefused(400, "invalid_request", "a JSON string holds a NUL character (\\u0000)")
        if _LONE_HIGH.search(body) or _LONE_LOW.search(body):
            return BodyRefused(400, "invalid_request", "a JSON string holds a lone surrogate (not Unicode text)")
    if too_deep(body):
        return BodyRefused(400, "invalid_request", f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    return None


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Nesting beyond ``limit``: its brackets, strings left out, lose their innermost pairs ``limit`` times over.

    Regular expressions only (no recursion, no loop per byte): a megabyte of ``[`` is cheap to refuse.
    Unbalanced brackets are invalid JSON, for the parser to refuse; but too many of them are refused here,
    before a recursive parser meets them.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # fewer openings than the limit, strings included
        return False
    skeleton = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", body))
    for _ in range(limit):
        if not skeleton:
            return False
        skeleton, removed = _INNERMOST.subn(b"", skeleton)
        if not removed:
            return len(skeleton) > limit
    return bool(skeleton)


def _json_expected(path: str, content_type: str) -> bool:
    # The CSC routes read JSON whatever the content type; FastAPI reads it without one or with a JSON one.
    if path.startswith("/csc/") or not content_type:
        return True
    media = content_type.split(";", 1)[0].strip()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _bearer(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    token = value[7:].strip() if value[:7].lower() == "bearer " else ""
    return token or None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        refused = refusal_in_url(scope)
        if refused is not None:
            await answer(scope, refused)(scope, receive, send)
            return
        if (scope["method"], path) in _STREAMED:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else None
        if not length and "chunked" not in headers.get("transfer-encoding", "").lower():
            await self.app(scope, receive, send)  # no body: nothing to bound
            return
        unauthenticated = await self._unauthenticated(scope, path, headers)
        if unauthenticated is not None:
            await unauthenticated(scope, receive, send)
            return
        limit = self.runtime.settings.max_json_bytes
        if length is not None and length > limit:
            await answer(scope, too_large(limit))(scope, receive, send)
            return
        content_type = headers.get("content-type", "").lower()
        await self.app(scope, _Counted(receive, limit, content_type, _json_expected(path, content_type)), send)

    async def _unauthenticated(self, scope: Scope, path: str, headers: Headers) -> JSONResponse | None:
        """The answer the route would give, for a body sent without the credentials it needs; None to go on."""
        token = _bearer(headers)
        if path.startswith("/csc/") and not path.endswith("/info"):
            return None if token else _csc(401, "invalid_token", "a bearer access token is required")
        if not path.startswith("/v1/") or path in _PUBLIC:
            return None
        if path.startswith("/v1/devices/"):
            return None if token else problem(403, "device_not_active", "a bearer token is required")
        try:  # a relying system's call: its token is checked before its body is read
            ctx = await anyio.to_thread.run_sync(_authenticate, self.runtime, token)
        except clients.InvalidToken as exc:
            return problem(401, exc.code, exc.message)
        remember_client(scope, token, ctx)  # the route's authentication reuses it: one look-up per call
        return None


def _authenticate(runtime: Runtime, token: str | None) -> clients.ClientContext:
    with read_connection(runtime.sessions) as connection:
        return clients.authenticate(connection, token)


_CLIENT = "kyso.client_context"
"""Key in the request's ``scope["state"]`` (``request.state``): the token and the caller it authenticated."""


def remember_client(scope: Scope, token: str | None, ctx: clients.ClientContext) -> None:
    """Keep the caller authenticated for this request, for the route to reuse with the same token."""
    scope.setdefault("state", {})[_CLIENT] = (token, ctx)


def remembered_client(scope: Scope, token: str | None) -> clients.ClientContext | None:
    """The caller authenticated earlier in this request from ``token``, or None."""
    found = scope.get("state", {}).get(_CLIENT)
    if found is None or not token or found[0] != token:
        return None
    ctx: clients.ClientContext = found[1]
    return ctx


class _Counted:
    """``receive`` that counts the body's bytes and checks the whole body before handing on its end."""

    def __init__(self, receive: Receive, limit: int, content_type: str, json_expected: bool) -> None:
        self.receive, self.limit = receive, limit
        self.content_type, self.json_expected = content_type, json_expected
        self.chunks: list[bytes] = []
        self.size = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.limit:
            self.chunks.clear()
            raise too_large(self.limit)
        if message.get("more_body", False):
            self.chunks.append(chunk)
            return message
        body = b"".join([*self.chunks, chunk]) if self.chunks else chunk
        self.chunks.clear()
        args = body, self.content_type, self.json_expected
        refused = await anyio.to_thread.run_sync(refusal_in_body, *args) if len(body) > _IN_A_THREAD \
            else refusal_in_body(*args)
        if refused is not None:
            raise refused
        return message


def _csc(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def answer(scope: Scope, refused: BodyRefused) -> JSONResponse:
    """The refusal in the body format of the route it was meant for."""
    path = scope["path"]
    if path.startswith("/csc/"):
        return _csc(refused.status_code, "invalid_request", str(refused.detail))
    if path.startswith("/oauth2/"):
        return JSONResponse({"error": "invalid_request", "error_description": str(refused.detail)},
                            status_code=refused.status_code, headers={"Cache-Control": "no-store"})
    return problem(refused.status_code, refused.code, str(refused.detail))


def install(app: FastAPI) -> None:
    """Render a refusal raised while a route read its body."""

    async def _refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BodyRefused)
        return answer(request.scope, exc)

    app.add_exception_handler(BodyRefused, _refused)
