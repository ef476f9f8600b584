"""Providers calling kyso back about a delegated request (VNPT §3.5, Viettel ``async: 3``, MISA's webhook).

A call back is authenticated as its provider documents it (Viettel: a bearer token from kyso's
client-credentials endpoint), else by a per-provider secret in the registered URL, compared in
constant time; and it must come from an allowlisted address. It is recorded once (a repeated
delivery is answered, not applied twice), then fed to the same transitions as polling
(:func:`broker.credentials.delegated.apply_result`), which verify the signatures against the
certificate. Every call back, accepted or refused, is audited. Polling stays the fallback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from broker import audit
from broker.audit import Actor
from broker.credentials import delegated
from broker.db.engine import read_transaction, transaction
from broker.db.models import Credential, ProviderCallback, SigningRequest
from broker.settings import Settings
from ca_adapters import CaAdapter
from ca_adapters.remote_signing import ProviderApiError, RemoteSigningClient

TOKEN_SECONDS = 300
"""Lifetime of a token kyso hands Viettel for its call backs (kyso's choice)."""
TOKEN_PROVIDERS = frozenset({"viettel"})
"""Providers that authenticate with a client-credentials handshake first (the others: a URL secret)."""


@dataclass(frozen=True)
class CallbackConfig:
    secret: str
    """The URL's ``key`` (VNPT, MISA), or the client secret of Viettel's handshake."""
    client_id: str
    """Viettel: the client id kyso gave Viettel for the handshake."""
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def config(settings: Settings, provider: str) -> CallbackConfig | None:
    """``[provider_callbacks.NAME]``: ``secret``, ``allow_from`` (addresses or networks), ``client_id``."""
    raw = settings.provider_callbacks.get(provider)
    if not raw or not raw.get("secret"):
        return None
    allow = raw.get("allow_from") or []
    networks = tuple(ipaddress.ip_network(a, strict=False) for a in ([allow] if isinstance(allow, str) else allow))
    return CallbackConfig(str(raw["secret"]), str(raw.get("client_id") or ""), networks)


def _allowed(cfg: CallbackConfig, source: str | None) -> bool:
    try:
        address = ipaddress.ip_address(source or "")
    except ValueError:
        return False
    return any(address in network for network in cfg.allow_from)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _token_mac(secret: str, provider: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{provider}|callback|{expires}".encode(), hashlib.sha256).hexdigest()


def _token_ok(cfg: CallbackConfig, provider: str, authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Bearer "):
        return False
    expires, _, mac = authorization.removeprefix("Bearer ").partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return _same(mac, _token_mac(cfg.secret, provider, int(expires)))


def _refuse(factory: sessionmaker[Session], actor: Actor, action: str, reason: str, status: int,
            details: dict[str, Any] | None = None) -> Answer:
    with transaction(factory) as session:
        audit.record(session, actor, action, outcome="refused", target_type="provider", target_id=actor.name,
                     details={"reason": reason, **(details or {})})
    return Answer(status, {"error": reason})


def issue_token(factory: sessionmaker[Session], settings: Settings, provider: str, *, form: dict[str, str],
                basic: tuple[str, str] | None, source: str | None) -> Answer:
    """kyso's client-credentials endpoint, which Viettel calls before each call back."""
    actor = Actor("provider", provider, source)
    cfg = config(settings, provider)
    if provider not in TOKEN_PROVIDERS or cfg is None:
        return _refuse(factory, actor, "provider.callback_token", "callbacks_not_configured", 404)
    if not _allowed(cfg, source):
        return _refuse(factory, actor, "provider.callback_token", "source_not_allowed", 403)
    client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
    if form.get("grant_type", "client_credentials") != "client_credentials":
        return _refuse(factory, actor, "provider.callback_token", "unsupported_grant_type", 400)
    # Both compared, always: the answer must not tell which one was wrong.
    if not (_same(client_id, cfg.client_id) & _same(secret, cfg.secret)):
        return _refuse(factory, actor, "provider.callback_token", "invalid_client", 401)
    expires = int(time.time()) + TOKEN_SECONDS
    with transaction(factory) as session:
        audit.record(session, actor, "provider.callback_token", target_type="provider", target_id=provider)
    return Answer(200, {"access_token": f"{expires}.{_token_mac(cfg.secret, provider, expires)}",
                        "token_type": "Bearer", "expires_in": TOKEN_SECONDS})


def receive(factory: sessionmaker[Session], settings: Settings, ca_for: Callable[[str], CaAdapter], provider: str, *,
            body: bytes, key: str | None, authorization: str | None, source: str | None) -> Answer:
    """Authenticate, record once and apply one call back; the answer the provider expects."""
    actor = Actor("provider", provider, source)
    cfg = config(settings, provider)
    if cfg is None:
        return _refuse(factory, actor, "provider.callback", "callbacks_not_configured", 404)
    client: RemoteSigningClient = ca_for(provider).remote_signing()
    try:
        return _receive(factory, cfg, client, actor, provider, body=body, key=key, authorization=authorization,
                        source=source)
    finally:
        client.close()


def _receive(factory: sessionmaker[Session], cfg: CallbackConfig, client: RemoteSigningClient, actor: Actor,
             provider: str, *, body: bytes, key: str | None, authorization: str | None, source: str | None) -> Answer:
    def refuse(reason: str, status: int, **details: Any) -> Answer:
        _refuse(factory, actor, "provider.callback", reason, status, details)
        return Answer(status, client.callback_reply(False, reason))

    if not _allowed(cfg, source):
        return refuse("source_not_allowed", 403)
    authenticated = _token_ok(cfg, provider, authorization) if provider in TOKEN_PROVIDERS else _same(key, cfg.secret)
    if not authenticated:
        return refuse("bad_credentials", 401)
    try:
        event = client.parse_callback(json.loads(body))
    except (ValueError, ProviderApiError) as exc:
        return refuse("malformed", 400, detail=str(getattr(exc, "message", "not JSON"))[:120])
    with read_transaction(factory) as session:
        request_id = session.scalar(select(SigningRequest.id).join(Credential, SigningRequest.credential_id == Credential.id)
                                    .where(SigningRequest.provider_transaction == event.transaction_id,
                                           Credential.provider == provider))
    if request_id is None:
        return refuse("unknown_transaction", 404, transaction=event.transaction_id[:64])
    if event.result.anomaly:  # not recorded: a corrected delivery may follow; polling goes on meanwhile
        return refuse(event.result.anomaly, 422, request=request_id, detail=event.result.detail[:120])
    try:
        with transaction(factory) as session:
            session.add(ProviderCallback(provider=provider, callback_id=event.callback_id,
                                         transaction=event.transaction_id[:128], request_id=request_id,
                                         status=event.result.status.value))
            session.flush()
            audit.record(session, actor, "provider.callback", target_type="request", target_id=request_id,
                         details={"status": event.result.status.value, "transaction": event.transaction_id[:64]})
    except IntegrityError:
        with transaction(factory) as session:
            audit.record(session, actor, "provider.callback", target_type="request", target_id=request_id,
                         details={"status": event.result.status.value, "duplicate": True})
        return Answer(200, client.callback_reply(True, "already received"))
    state = delegated.apply_result(factory, actor, request_id, provider, event.transaction_id, event.result)
    return Answer(200, client.callback_reply(True, state.value))
