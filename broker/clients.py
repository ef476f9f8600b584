"""Relying systems, their OAuth2 clients (client credentials) and what a client may see.

Client secrets and access tokens are random, shown once, and stored as SHA-256 hashes. A client
sees only the users, credentials and requests of its relying system's units; anything else
answers as if it did not exist.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session, contains_eager

from broker import audit
from broker.approvals import token_hash
from broker.audit import Actor
from broker.db.models import (
    AccessToken,
    ClientStatus,
    Credential,
    OAuthClient,
    RelyingSystem,
    RelyingSystemUnit,
    SigningRequest,
    User,
)
from broker.directory import get_unit
from broker.errors import Conflict, InvalidInput, KysoError, NotFound, Unauthenticated
from broker.lifecycle.signing_requests import aware, check_shown_text, now
from broker.lifecycle.webhook_targets import validate_allowlist

SCOPES = ("sign", "read")
TOKEN_SECONDS = 600


class InvalidClient(Unauthenticated):
    code = "invalid_client"


class InvalidToken(Unauthenticated):
    code = "invalid_token"


class InsufficientScope(KysoError):
    code = "insufficient_scope"
    status = 403


@dataclass(frozen=True)
class ClientContext:
    """Who is calling: a client of a relying system, with its units and scopes."""

    client_id: str
    relying_system: str
    unit_ids: frozenset[int]
    scopes: frozenset[str]

    def actor(self, origin: str | None) -> Actor:
        return Actor("client", f"{self.relying_system}/{self.client_id}", origin)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(f"this call needs the {scope!r} scope")


# -- administration ------------------------------------------------------------------------------------


def add_relying_system(session: Session, actor: Actor, name: str, unit_codes: list[str],
                       webhook_allowlist: list[str] | None = None, *, allow_private: bool = False,
                       display_name: str | None = None) -> RelyingSystem:
    """``webhook_allowlist``: ``https://host[:port][/path]`` entries, checked here and stored in
    canonical form (``allow_private``: http and private addresses too, for tests and sandboxes).
    ``display_name``: what signers are shown instead of the name."""
    if not name or len(name) > 64:
        raise InvalidInput("a relying system needs a name of at most 64 characters")
    display_name = (display_name or "").strip() or None
    if display_name is not None:
        if len(display_name) > 128:
            raise InvalidInput("a display name has at most 128 characters")
        check_shown_text(display_name, "display name")  # signers read it: no bidi tricks
    allowlist = validate_allowlist(webhook_allowlist or [], allow_private=allow_private)
    if session.scalar(select(RelyingSystem).where(RelyingSystem.name == name)) is not None:
        raise Conflict(f"relying system {name!r} already exists")
    units = [get_unit(session, code) for code in unit_codes]
    rs = RelyingSystem(name=name, display_name=display_name, webhook_allowlist=allowlist, units=units,
                       webhook_secret=secrets.token_urlsafe(32))
    session.add(rs)
    session.flush()
    audit.record(session, actor, "rs.add", target_type="relying_system", target_id=name,
                 details={"units": unit_codes, "webhook_allowlist": allowlist, "display_name": display_name})
    return rs


def get_relying_system(session: Session, name: str) -> RelyingSystem:
    rs = session.scalar(select(RelyingSystem).where(RelyingSystem.name == name))
    if rs is None:
        raise NotFound(f"no relying system {name!r}")
    return rs


def list_relying_systems(session: Session) -> list[RelyingSystem]:
    return list(session.scalars(select(RelyingSystem).order_by(RelyingSystem.name)))


def add_client(session: Session, actor: Actor, rs_name: str, scopes: list[str] | None = None) -> tuple[OAuthClient, str]:
    """A new client of ``rs_name``; returns it and its secret (shown once)."""
    rs = get_relying_system(session, rs_name)
    chosen = scopes or list(SCOPES)
    unknown = set(chosen) - set(SCOPES)
    if unknown:
        raise InvalidInput(f"unknown scopes: {', '.join(sorted(unknown))}")
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(client_id="kc_" + secrets.token_hex(8), relying_system=rs, secret_hash=token_hash(secret),
                         scopes=chosen, status=ClientStatus.ACTIVE)
    session.add(client)
    session.flush()
    audit.record(session, actor, "client.add", target_type="client", target_id=client.client_id,
                 details={"relying_system": rs_name, "scopes": chosen})
    return client, secret


def list_clients(session: Session) -> list[OAuthClient]:
    return list(session.scalars(select(OAuthClient).order_by(OAuthClient.created_at)))


def _client(session: Session, client_id: str) -> OAuthClient:
    client = session.get(OAuthClient, client_id)
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


def rotate_secret(session: Session, actor: Actor, client_id: str) -> str:
    client = _client(session, client_id)
    secret = secrets.token_urlsafe(32)
    client.secret_hash = token_hash(secret)
    session.execute(delete(AccessToken).where(AccessToken.client_id == client_id))
    audit.record(session, actor, "client.rotate", target_type="client", target_id=client_id)
    return secret


def disable_client(session: Session, actor: Actor, client_id: str) -> None:
    client = _client(session, client_id)
    client.status = ClientStatus.DISABLED
    session.execute(delete(AccessToken).where(AccessToken.client_id == client_id))
    audit.record(session, actor, "client.disable", target_type="client", target_id=client_id)


def allow_webhook_target(session: Session, actor: Actor, rs_name: str, entry: str, *,
                         allow_private: bool = False) -> list[str]:
    """Add an entry (checked like at ``add_relying_system``, stored canonical) to the system's webhook
    allowlist; return the list. An entry already there changes nothing (and is not audited again)."""
    rs = get_relying_system(session, rs_name)
    current = list(rs.webhook_allowlist or [])
    [canonical] = validate_allowlist([entry], allow_private=allow_private)
    if canonical in current:
        return current
    updated = validate_allowlist([*current, canonical], allow_private=True)  # the count limit; old entries stay
    rs.webhook_allowlist = updated
    session.flush()
    audit.record(session, actor, "rs.webhook_allow", target_type="relying_system", target_id=rs_name,
                 details={"entry": canonical, "webhook_allowlist": updated})
    return updated


def disallow_webhook_target(session: Session, actor: Actor, rs_name: str, entry: str) -> list[str]:
    """Remove an entry (as given, or in canonical form) from the system's webhook allowlist; return the list."""
    rs = get_relying_system(session, rs_name)
    current = list(rs.webhook_allowlist or [])
    try:
        [canonical] = validate_allowlist([entry], allow_private=True)
    except KysoError:
        canonical = entry
    removed = [e for e in current if e in (entry, canonical)]
    if not removed:
        raise NotFound(f"{entry[:200]!r} is not in the webhook allowlist of {rs_name!r}")
    updated = [e for e in current if e not in removed]
    rs.webhook_allowlist = updated
    session.flush()
    audit.record(session, actor, "rs.webhook_disallow", target_type="relying_system", target_id=rs_name,
                 details={"entry": removed[0], "webhook_allowlist": updated})
    return updated


# -- tokens ----------------------------------------------------------------------------------------------


def issue_token(session: Session, origin: str | None, client_id: str, secret: str, scope: str | None,
                lifetime: int = TOKEN_SECONDS) -> tuple[str, int, list[str]]:
    """The client credentials grant: an opaque token, its lifetime and its scopes."""
    client = session.get(OAuthClient, client_id)
    given = token_hash(secret)
    expected = client.secret_hash if client is not None else token_hash("")
    if client is None or not hmac.compare_digest(given, expected) or client.status is not ClientStatus.ACTIVE:
        raise InvalidClient("unknown client, wrong secret or disabled client")
    asked = scope.split() if scope else list(client.scopes)
    if not set(asked) <= set(client.scopes):
        raise InsufficientScope(f"this client may ask for: {' '.join(client.scopes)}")
    token = secrets.token_urlsafe(32)
    session.add(AccessToken(token_hash=token_hash(token), client_id=client_id, scopes=asked,
                            expires_at=now() + timedelta(seconds=lifetime)))
    audit.record(session, Actor("client", client_id, origin), "token.issue", target_type="client",
                 target_id=client_id, details={"scopes": asked, "expires_in": lifetime})
    return token, lifetime, asked


_EXPIRED_TOKENS = delete(AccessToken).where(AccessToken.token_hash.in_(
    select(AccessToken.token_hash).where(AccessToken.expires_at < bindparam("b_before")).limit(bindparam("b_batch"))))
PURGE_BATCH = 1000


def purge_expired_tokens(session: Session, actor: Actor, before: datetime) -> int:
    """Delete up to :data:`PURGE_BATCH` access tokens that expired before ``before`` (they are refused
    already; a client that asks for a token per call leaves one a call): how many, audited."""
    # On the connection: the ORM would look for the deleted tokens among its loaded objects too.
    purged = session.connection().execute(_EXPIRED_TOKENS, {"b_before": before, "b_batch": PURGE_BATCH}).rowcount
    if purged:
        audit.record(session, actor, "token.purge", target_type="access_tokens", details={"expired": purged})
    return int(purged)


def record_refused_token(session: Session, origin: str | None, client_id: str, reason: str) -> None:
    """Audit a refused token request (in its own transaction: the attempt's was rolled back)."""
    audit.record(session, Actor("client", client_id[:64] or "?", origin), "token.issue", outcome="refused",
                 target_type="client", target_id=client_id[:64], details={"reason": reason})


# Built once (every API call runs it), executed on the connection.
_CALLER = (
    select(AccessToken.client_id, AccessToken.scopes, AccessToken.expires_at, OAuthClient.status,
           RelyingSystem.name, RelyingSystemUnit.unit_id)
    .join(OAuthClient, OAuthClient.client_id == AccessToken.client_id)
    .join(RelyingSystem, RelyingSystem.id == OAuthClient.relying_system_id)
    .outerjoin(RelyingSystemUnit, RelyingSystemUnit.relying_system_id == RelyingSystem.id)
    .where(AccessToken.token_hash == bindparam("token_hash"))
)
_VISIBLE_CREDENTIAL = (
    select(Credential).join(Credential.user).join(User.unit)
    .options(contains_eager(Credential.user).contains_eager(User.unit))
    .where(Credential.id == bindparam("credential_id"), User.unit_id.in_(bindparam("unit_ids", expanding=True)))
)


def authenticate(connection: Connection, token: str | None, at: datetime | None = None) -> ClientContext:
    """The caller of every API call: one statement (token, client, relying system and its units)."""
    if not token:
        raise InvalidToken("a bearer access token is required")
    rows = connection.execute(_CALLER, {"token_hash": token_hash(token)}).all()
    if not rows or aware(rows[0].expires_at) <= (at or now()) or rows[0].status is not ClientStatus.ACTIVE:
        raise InvalidToken("the access token is unknown or expired")
    first = rows[0]
    units = frozenset(row.unit_id for row in rows if row.unit_id is not None)
    return ClientContext(first.client_id, first.name, units, frozenset(first.scopes))


# -- what a client may see -----------------------------------------------------------------------------


def visible_user(session: Session, ctx: ClientContext, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or user.unit_id not in ctx.unit_ids:
        raise NotFound(f"no user {username!r}")
    return user


def visible_credential(session: Session, ctx: ClientContext, credential_id: str) -> Credential:
    credential = session.scalar(_VISIBLE_CREDENTIAL, {"credential_id": credential_id, "unit_ids": list(ctx.unit_ids)})
    if credential is None:
        raise NotFound(f"no credential {credential_id!r}")
    return credential


def visible_credentials(session: Session, ctx: ClientContext, username: str | None = None) -> list[Credential]:
    query = select(Credential).join(User).where(User.unit_id.in_(ctx.unit_ids)).order_by(Credential.created_at)
    if username:
        query = query.where(User.username == username)
    return list(session.scalars(query))


def visible_request(session: Session, ctx: ClientContext, request_id: str) -> SigningRequest:
    """A request belongs to the relying system that made it: to any other (even one serving the same
    unit) it does not exist. The unit check stays, so a unit taken off the system hides it too."""
    found = session.execute(_VISIBLE_REQUEST, {"request_id": request_id}).first()
    if found is None:
        raise NotFound(f"no signing request {request_id!r}")
    request, unit_id = found
    if request.client_id is None or request.relying_system != ctx.relying_system or unit_id not in ctx.unit_ids:
        raise NotFound(f"no signing request {request_id!r}")
    return request


# The request and its signer's unit in one statement (each status poll and download runs it).
_VISIBLE_REQUEST = (select(SigningRequest, User.unit_id).join(User, User.id == SigningRequest.user_id)
                    .where(SigningRequest.id == bindparam("request_id")))
