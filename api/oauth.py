"""``/oauth2/token``: the client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Depends, Form, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import client_origin, runtime
from api.problems import oauth_error
from broker import clients
from broker.db.engine import transaction
from broker.runtime import Runtime

router = APIRouter(tags=["oauth2"])


class TokenOut(BaseModel):
    """RFC 6749 §5.1: the access token response."""

    access_token: str = Field(description="Send it as ``Authorization: Bearer ...``")
    token_type: str = Field(description="Always Bearer")
    expires_in: int = Field(description="Seconds the token is valid")
    scope: str = Field(description="The scopes granted, space-separated (sign, read)")


@router.post("/oauth2/token", response_model=TokenOut)
def token(
    grant_type: str = Form(...),
    client_id: str | None = Form(default=None),
    client_secret: str | None = Form(default=None),
    scope: str | None = Form(default=None),
    authorization: str | None = Header(default=None),
    rt: Runtime = Depends(runtime),
    origin: str | None = Depends(client_origin),
) -> JSONResponse:
    """Exchange a client id and secret (HTTP Basic or form fields) for a short-lived bearer token."""
    if grant_type != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    if authorization and authorization.lower().startswith("basic "):
        try:
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return oauth_error(401, "invalid_client", "malformed Basic credentials")
    if not client_id or not client_secret:
        return oauth_error(401, "invalid_client", "client credentials are required")
    # NUL in Basic credentials (form fields with one are refused before): no database stores it.
    if "\x00" in client_id or "\x00" in client_secret:
        return oauth_error(401, "invalid_client", "malformed client credentials")
    try:
        with transaction(rt.sessions) as session:
            access_token, lifetime, scopes = clients.issue_token(session, origin, client_id, client_secret, scope)
    except (clients.InvalidClient, clients.InsufficientScope) as exc:
        with transaction(rt.sessions) as session:
            clients.record_refused_token(session, origin, client_id, exc.code)
        if isinstance(exc, clients.InvalidClient):
            return oauth_error(401, "invalid_client", exc.message)
        return oauth_error(400, "invalid_scope", exc.message)
    return JSONResponse({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime,
                         "scope": " ".join(scopes)}, headers={"Cache-Control": "no-store"})
