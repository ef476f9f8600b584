"""The local admin socket: what the CLI asks a running server to do with the HSM.

While ``kyso serve`` or ``kyso sandbox`` runs, it holds the only logged-in sessions on the token;
CLI commands that need the HSM send their work here instead of logging in a second process
(SoftHSM rewrites its token file at every login: two processes logging in break each other). The socket is ``DATA_DIR/admin.sock``, mode 0600: only the server's OS user
(and root) can connect, and only connections on that socket reach these routes, never TCP ones.
The CLI names its OS user and host, which go into the audit events.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header
from pydantic import BaseModel
from sqlalchemy import select

from api import problems
from api.deps import runtime
from broker import credentials
from broker.audit import Actor
from broker.audit import checkpoint as audit_checkpoint
from broker.audit import export as audit_export
from broker.audit import key as audit_key
from broker.db.engine import read_transaction, transaction
from broker.db.models import SigningRequest
from broker.errors import InvalidInput, PolicyViolation
from broker.lifecycle import sole_control, unconfirmed_signing
from broker.runtime import Runtime
from signer import ltv, pipeline

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

router = APIRouter(prefix="/admin/v1")


def cli_actor(x_kyso_os_user: str = Header("unknown"), x_kyso_host: str = Header("unknown")) -> Actor:
    return Actor("cli", x_kyso_os_user[:64], x_kyso_host[:128])


class EnrollIn(BaseModel):
    user: str
    ca: str
    key: str = "rsa-2048"
    scheme: str | None = None


class CredentialOut(BaseModel):
    id: str
    user: str
    subject: str
    provider: str
    provider_name: str
    key_algorithm: str
    serial_hex: str
    not_after: str


def _credential_out(rt: Runtime, c: Any) -> CredentialOut:
    return CredentialOut(id=c.id, user=c.user.username, subject=c.subject, provider=c.provider,
                         provider_name=rt.ca(c.provider).profile.display_name, key_algorithm=c.key_algorithm,
                         serial_hex=c.serial_hex, not_after=c.not_after.isoformat())


@router.post("/credentials")
def enroll(body: EnrollIn, actor: Actor = Depends(cli_actor), rt: Runtime = Depends(runtime)) -> CredentialOut:
    """``kyso cert enroll``: a key in the HSM, certified by the provider."""
    algorithm = credentials.parse_key_algorithm(body.key)
    scheme = credentials.parse_scheme(body.scheme, algorithm) if body.scheme else None
    adapter = rt.ca(body.ca)
    with transaction(rt.sessions) as session:
        credential = credentials.enroll(session, actor, rt.hsm, adapter, username=body.user,
                                        key_algorithm=algorithm, scheme=scheme)
        return _credential_out(rt, credential)


@router.post("/credentials/{credential_id}/renew")
def renew(credential_id: str, actor: Actor = Depends(cli_actor), rt: Runtime = Depends(runtime)) -> CredentialOut:
    """``kyso cert renew``: a new key and certificate; the old certificate revoked as superseded."""
    with transaction(rt.sessions) as session:
        old = credentials.get_credential(session, credential_id)
        new = credentials.renew(session, actor, rt.hsm, rt.ca(old.provider), credential_id)
        return _credential_out(rt, new)


class SignaturesOut(BaseModel):
    signatures: list[str]


@router.post("/requests/{request_id}/sign")
def sign_approved(request_id: str, actor: Actor = Depends(cli_actor),
                  rt: Runtime = Depends(runtime)) -> SignaturesOut:
    """A confirmed ``kyso sign``: the approved request's hashes, through sole control (single use).

    Only the CLI's own requests: a relying system's are finished by the worker or by ``signHash``.
    """
    with read_transaction(rt.sessions) as session:
        if session.scalar(select(SigningRequest.client_id).where(SigningRequest.id == request_id)) is not None:
            raise PolicyViolation(f"request {request_id} belongs to a relying system; the CLI does not sign it")
    signatures = sole_control.sign_approved(rt.sessions, rt.hsm, actor, request_id)
    return SignaturesOut(signatures=[base64.b64encode(s).decode() for s in signatures])


class UnconfirmedIn(BaseModel):
    credential_id: str
    input_path: str
    output_path: str
    format: Literal["pades", "cades", "xades"]
    spec: dict[str, Any]
    """The format's spec (:mod:`signer.pipeline`) as the CLI built it."""
    level: str = "B-B"


class UnconfirmedOut(BaseModel):
    level: str


_SPECS = {"pades": pipeline.PadesSpec, "cades": pipeline.CadesSpec, "xades": pipeline.XadesSpec}


@router.post("/unconfirmed-signatures")
def sign_unconfirmed(body: UnconfirmedIn, actor: Actor = Depends(cli_actor),
                     rt: Runtime = Depends(runtime)) -> UnconfirmedOut:
    """``kyso sign --unconfirmed`` (a sandbox only): the files are the CLI's, on this machine."""
    if not rt.settings.sandbox:
        raise PolicyViolation("unconfirmed signing is refused outside a sandbox data dir (kyso init --sandbox)")
    source, target = Path(body.input_path), Path(body.output_path)
    if not (source.is_absolute() and target.is_absolute()):
        raise InvalidInput("paths must be absolute")
    try:
        spec = _SPECS[body.format](**body.spec)
        level = ltv.parse_level(body.level)
    except (TypeError, ltv.UnsupportedLevel) as exc:
        raise InvalidInput(f"not a {body.format} spec or level: {exc}") from exc
    with transaction(rt.sessions) as session:
        credential = credentials.get_credential(session, body.credential_id)
        services = rt.long_term_services(credential.provider) if level.timestamped else None
        reached = unconfirmed_signing.sign(session, actor, rt.hsm, credential, rt.ca(credential.provider), spec,
                                           source, target, level=level, services=services)
    return UnconfirmedOut(level=reached.value)


class CheckpointIn(BaseModel):
    reason: Literal["manual", "backup"] = "manual"


class CheckpointOut(BaseModel):
    event_id: int | None
    head_id: int | None = None
    head_hash: str | None = None
    anchor: dict[str, Any] | None = None
    anchors_path: str


@router.post("/audit/checkpoints")
def checkpoint(body: CheckpointIn | None = None, actor: Actor = Depends(cli_actor),
               rt: Runtime = Depends(runtime)) -> CheckpointOut:
    """``kyso audit checkpoint`` (and the one a backup starts with): sign the chain head with the HSM's audit key."""
    made = audit_checkpoint.write_checkpoint(rt, actor, body.reason if body else "manual")
    anchors = str(rt.settings.anchors_path)
    if made is None:
        return CheckpointOut(event_id=None, anchors_path=anchors)
    return CheckpointOut(event_id=made.event_id, head_id=made.head_id, head_hash=made.head_hash.hex(),
                         anchor=made.anchor, anchors_path=anchors)


class PublicKeyOut(BaseModel):
    pem: str | None


@router.get("/audit/public-key")
def audit_public_key(rt: Runtime = Depends(runtime)) -> PublicKeyOut:
    """The audit key's public half, for ``kyso audit verify``."""
    key = audit_key.audit_public_key(rt.hsm)
    return PublicKeyOut(pem=key.pem() if key else None)


class ExportIn(BaseModel):
    output_path: str
    since: str | None = None
    until: str | None = None


class ExportOut(BaseModel):
    count: int
    first_id: int | None
    last_id: int | None
    anchors: int
    key_fingerprint: str


@router.post("/audit/exports")
def export(body: ExportIn, rt: Runtime = Depends(runtime)) -> ExportOut:
    """``kyso audit export``: written by the server (it signs the trailer) to the CLI's file."""
    target = Path(body.output_path)
    if not target.is_absolute():
        raise InvalidInput("output_path must be absolute")
    since = datetime.fromisoformat(body.since) if body.since else None
    until = datetime.fromisoformat(body.until) if body.until else None
    tmp = target.with_name(target.name + ".part")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            summary = audit_export.export(rt.sessions, rt.hsm, rt.settings.anchors_path, fh, since, until)
        tmp.replace(target)
    except OSError as exc:
        raise InvalidInput(f"cannot write {target}: {exc.strerror}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return ExportOut(count=summary.count, first_id=summary.first_id, last_id=summary.last_id,
                     anchors=summary.anchors, key_fingerprint=summary.key_fingerprint)


@router.get("/ping")
def ping(rt: Runtime = Depends(runtime)) -> dict[str, str]:
    return {"data_dir": str(rt.settings.data_dir.resolve())}


def create_admin_app(runtime_: Runtime) -> FastAPI:
    app = FastAPI(title="kyso admin socket", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.runtime = runtime_
    problems.install(app)
    app.include_router(router)  # sync routes: FastAPI runs them in its thread pool, off the event loop
    return app


class AdminSocketRouting:
    """Sends connections that came in on the Unix admin socket to the admin app, all others to the API.

    uvicorn gives a Unix socket's connections ``scope["server"] == (path, None)``, TCP ones a port.
    Only the data dir's own admin socket counts: the API served on another Unix socket (behind a
    reverse proxy, say) never reaches the admin routes.
    """

    def __init__(self, app: ASGIApp, admin: ASGIApp, socket_path: Path | None) -> None:
        self.app, self.admin = app, admin
        self.socket_path = str(socket_path) if socket_path else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if (self.socket_path is not None and scope["type"] in ("http", "websocket") and server is not None
                and server[1] is None and server[0] == self.socket_path):
            await self.admin(scope, receive, send)
            return
        await self.app(scope, receive, send)
