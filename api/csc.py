"""The CSC API, ``/csc/v1`` (v1.0.4.0 names) and ``/csc/v2`` (2.0 names, v1 names accepted too),
over one implementation. Errors use CSC bodies: ``{"error", "error_description"}``.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import csc_schemas
from api.body_limits import BodyRefused, remember_client, remembered_client
from api.deps import origin_of, runtime_of
from api.problems import CSC_RESPONSES, capped
from biometrics import ConfirmationError
from broker import clients, csc, timestamping
from broker import credentials as credential_service
from broker.db.engine import read_connection, read_transaction
from broker.db.models import CredentialStatus
from broker.errors import InvalidInput, InvalidText, KysoError, NotFound, PolicyViolation
from broker.lifecycle.load_limits import RateLimited
from broker.runtime import Runtime
from ca_adapters import CaError
from hsm import DeviceError, HsmError, TokenMissing
from signer import SignerError
from signer.errors import CertificateRevoked

V1, V2 = "1.0.4.0", "2.0.0.2"
log = logging.getLogger("kyso.csc")


def csc_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": capped(description)}, status_code=status)


def translate(exc: Exception) -> JSONResponse:
    """The CSC error body and status of ``exc`` (the OpenAPI document asks it too)."""
    if isinstance(exc, BodyRefused):
        return csc_error(exc.status_code, "invalid_request", str(exc.detail))
    if isinstance(exc, clients.InvalidToken):
        return csc_error(401, "invalid_token", exc.message)
    if isinstance(exc, RateLimited):
        response = csc_error(429, "too_many_requests", exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, csc.SadExpired):
        return csc_error(400, "expired_token", exc.message)
    if isinstance(exc, csc.AccessDenied | clients.InsufficientScope | PolicyViolation | CertificateRevoked):
        return csc_error(403, "access_denied", exc.message)  # type: ignore[union-attr]
    if isinstance(exc, timestamping.TsaUnavailable):
        return csc_error(503, "temporarily_unavailable", exc.message)
    if isinstance(exc, TokenMissing | DeviceError):
        return csc_error(503, "temporarily_unavailable", "the signing device is unavailable")
    if isinstance(exc, InvalidText):  # the signer would be shown a description that displays as something else
        return csc_error(400, "invalid_text", exc.message)
    if isinstance(exc, NotFound | InvalidInput | SignerError | ConfirmationError | KysoError | HsmError | CaError):
        return csc_error(400, "invalid_request", getattr(exc, "message", str(exc)))
    log.exception("unexpected error in a CSC call")  # a fault of kyso's: the trace goes to the log, not to the caller
    return csc_error(500, "server_error", "internal error")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting the size limit let through
        raise InvalidInput("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _b64_list(body: dict[str, Any]) -> list[bytes]:
    values = body.get("hashes", body.get("hash"))
    if not isinstance(values, list) or not values:
        raise InvalidInput("hashes (v2) or hash (v1) must be a non-empty list")
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except (binascii.Error, TypeError, ValueError) as exc:
        raise InvalidInput("a hash is not valid base64") from exc


def _text(body: dict[str, Any], *names: str, required: bool = True) -> str | None:
    for name in names:
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInput(f"{name} must be a string")
            return value
    if required:
        raise InvalidInput(f"{names[0]} is required")
    return None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def build_router(version: str) -> APIRouter:
    v2 = version == V2
    router = APIRouter(prefix=f"/csc/{'v2' if v2 else 'v1'}", tags=[f"CSC {version}"], responses=CSC_RESPONSES)

    async def guarded(request: Request, rt: Runtime, work: Callable[[clients.ClientContext, dict[str, Any]], Any],
                      authenticated: bool = True) -> JSONResponse:
        try:
            # The caller is known before its body is read (once per call: reused if already authenticated).
            ctx = await _caller(request, rt) if authenticated else None
            body = await _body(request)
            if inspect.iscoroutinefunction(work):  # it waits (for the signer): the pool only for its queries
                return JSONResponse(await work(ctx, body))  # type: ignore[arg-type]
            return JSONResponse(await run_in_threadpool(work, ctx, body))
        except Exception as exc:  # noqa: BLE001 - every error becomes a CSC error body
            return translate(exc)

    @router.post("/info",
                 **csc_schemas.documented(csc_schemas.InfoIn, csc_schemas.InfoOut))
    async def info(request: Request) -> JSONResponse:
        rt = runtime_of(request)

        def work(_: Any, body: dict[str, Any]) -> dict[str, Any]:
            _text(body, "lang", required=False)  # answered in vi-VN whatever it asks, but it must be a language tag
            data: dict[str, Any] = {
                "specs": version, "name": "kyso", "logo": f"{rt.settings.public_base_url}/static/logo.png",
                "region": "VN", "lang": "vi-VN", "description": "kyso remote signing broker (SCAL2)",
                "authType": ["oauth2client"], "oauth2": rt.settings.public_base_url,
                "methods": ["credentials/list", "credentials/info", "credentials/authorize", "signatures/signHash",
                            *(["signatures/timestamp"] if rt.settings.timestamp_provider else [])],
            }
            if v2:
                data["asynchronousOperationMode"] = False
                data["signAlgorithms"] = {"algos": ["1.2.840.113549.1.1.11", "1.2.840.113549.1.1.10",
                                                    "1.2.840.10045.4.3.2"], "algoParams": []}
            return data

        return await guarded(request, rt, work, authenticated=False)

    @router.post("/credentials/list",
                 **csc_schemas.documented(csc_schemas.CredentialsListIn, csc_schemas.CredentialsListOut))
    async def credentials_list(request: Request) -> JSONResponse:
        rt = runtime_of(request)

        def work(ctx: clients.ClientContext, body: dict[str, Any]) -> dict[str, Any]:
            user = _text(body, "userID", required=False)
            most = body.get("maxResults")
            if most is not None and (not isinstance(most, int) or isinstance(most, bool) or most < 1):
                raise InvalidInput("maxResults must be a positive integer")
            with read_transaction(rt.sessions) as session:
                found = clients.visible_credentials(session, ctx, user)
                return {"credentialIDs": [c.id for c in found if c.status is CredentialStatus.ACTIVE][:most]}

        return await guarded(request, rt, work)

    @router.post("/credentials/info",
                 **csc_schemas.documented(csc_schemas.CredentialsInfoIn, csc_schemas.CredentialsInfoOut))
    async def credentials_info(request: Request) -> JSONResponse:
        rt = runtime_of(request)

        def work(ctx: clients.ClientContext, body: dict[str, Any]) -> dict[str, Any]:
            credential_id = _text(body, "credentialID")
            which = _text(body, "certificates", required=False) or "single"
            if which not in ("none", "single", "chain"):
                raise InvalidInput("certificates must be none, single or chain")
            with read_transaction(rt.sessions) as session:
                credential = clients.visible_credential(session, ctx, str(credential_id))
                return _credential_info(credential, which, v2,
                                        credential_service.batch_limit(credential, rt.settings.max_batch))

        return await guarded(request, rt, work)

    @router.post("/credentials/authorize",
                 **csc_schemas.documented(csc_schemas.AuthorizeIn, csc_schemas.AuthorizeOut))
    async def authorize(request: Request) -> JSONResponse:
        rt, origin = runtime_of(request), origin_of(request)  # plain calls: no dependency solving per call

        async def work(ctx: clients.ClientContext, body: dict[str, Any]) -> dict[str, Any]:
            digests = _b64_list(body)
            hash_name = csc.resolve_hash_algorithm(_text(body, "hashAlgorithmOID", "hashAlgo", required=False),
                                                   None, digests)
            num = body.get("numSignatures")
            if num is not None and not isinstance(num, int):
                raise InvalidInput("numSignatures must be an integer")
            result = await csc.authorize(rt.sessions, rt.settings, rt.notifier, ctx, origin, str(_text(body, "credentialID")),
                                   digests, hash_name, num, _text(body, "description", required=False),
                                   rt.settings.authorize_wait_seconds, rt.ca)
            return {"SAD": result.sad, "expiresIn": result.expires_in}

        return await guarded(request, rt, work)

    @router.post("/signatures/signHash",
                 **csc_schemas.documented(csc_schemas.SignHashIn, csc_schemas.SignHashOut))
    async def sign_hash(request: Request) -> JSONResponse:
        rt, origin = runtime_of(request), origin_of(request)

        def work(ctx: clients.ClientContext, body: dict[str, Any]) -> dict[str, Any]:
            digests = _b64_list(body)
            sign_algo = str(_text(body, "signAlgo"))
            hash_name = csc.resolve_hash_algorithm(_text(body, "hashAlgorithmOID", "hashAlgo", required=False),
                                                   sign_algo, digests)
            params_b64 = _text(body, "signAlgoParams", required=False)
            try:
                params = base64.b64decode(params_b64, validate=True) if params_b64 else None
            except (binascii.Error, ValueError) as exc:
                raise InvalidInput("signAlgoParams is not valid base64") from exc
            mode = _text(body, "operationMode", required=False)
            if mode not in (None, "S"):
                raise InvalidInput("only synchronous operation (operationMode S) is supported")
            signatures = csc.sign_hash(rt.sessions, rt.settings, rt.hsm, ctx, origin, str(_text(body, "credentialID")),
                                       str(_text(body, "SAD")), digests, hash_name, sign_algo, params)
            return {"signatures": [base64.b64encode(s).decode() for s in signatures]}

        return await guarded(request, rt, work)

    @router.post("/signatures/timestamp",
                 **csc_schemas.documented(csc_schemas.TimestampIn, csc_schemas.TimestampOut))
    async def timestamp(request: Request) -> JSONResponse:
        rt = runtime_of(request)

        def work(ctx: clients.ClientContext, body: dict[str, Any]) -> dict[str, Any]:
            ctx.require("sign")
            digest = _b64_list({"hash": [_text(body, "hash")]})[0]
            hash_oid = str(_text(body, "hashAlgorithmOID", "hashAlgo"))
            nonce = timestamping.parse_nonce(_text(body, "nonce", required=False))
            provider = rt.settings.timestamp_provider
            tsa_url = rt.ca(provider).endpoints().tsa_url if provider else None
            token = timestamping.timestamp(tsa_url, digest, hash_oid, nonce, rt.settings.tsa_timeout_seconds)
            return {"timestamp": base64.b64encode(token).decode()}

        return await guarded(request, rt, work)

    return router


async def _caller(request: Request, rt: Runtime) -> clients.ClientContext:
    token = _bearer(request)
    ctx = remembered_client(request.scope, token)
    if ctx is None:
        ctx = await run_in_threadpool(_authenticate, rt, token)
        remember_client(request.scope, token, ctx)
    return ctx


def _authenticate(rt: Runtime, token: str | None) -> clients.ClientContext:
    with read_connection(rt.sessions) as connection:
        return clients.authenticate(connection, token)


def _credential_info(credential: Any, which: str, v2: bool, max_batch: int) -> dict[str, Any]:
    cert, chain = credential_service.certificate_chain(credential)
    certs = {"none": [], "single": [cert], "chain": [cert, *chain]}[which]
    active = credential.status is CredentialStatus.ACTIVE
    key: dict[str, Any] = {"status": "enabled" if active else "disabled", "algo": csc.key_algorithms(credential),
                           "len": cert.public_key.bit_size}
    if cert.public_key.algorithm == "ec":
        key["curve"] = cert.public_key.curve[1]
    info: dict[str, Any] = {
        "key": key,
        "cert": {
            "status": "valid" if active else "revoked",
            "certificates": [base64.b64encode(c.dump()).decode() for c in certs],
            "issuerDN": cert.issuer.rfc4514_string() if hasattr(cert.issuer, "rfc4514_string") else cert.issuer.human_friendly,
            "serialNumber": format(cert.serial_number, "x"),
            "subjectDN": cert.subject.human_friendly,
            "validFrom": cert.not_valid_before.strftime("%Y%m%d%H%M%SZ"),
            "validTo": cert.not_valid_after.strftime("%Y%m%d%H%M%SZ"),
        },
        "multisign": max_batch,
        "SCAL": "2",
        "lang": "vi-VN",
    }
    if v2:
        info["auth"] = {"mode": "implicit"}
    else:
        info["authMode"] = "implicit"
    return info


v1_router = build_router(V1)
v2_router = build_router(V2)
