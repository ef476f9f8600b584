"""MISA eSign, faked from its samples.

Not sampled, answered as the samples around them suggest: the login-api request body (``userName``,
``password``) and headers (``x-clientId``, ``x-clientKey``); the certificates and status requests'
headers (taken from the sign request's).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.ca_adapters.independent_fake.samples import sample, sample_headers, shape_errors
from tests.ca_adapters.independent_fake.state import FakeState, b64, b64_digest


def routes(fake: FakeState) -> list[Route]:
    ok_status = sample("misa", "sign.reply")["status"]

    def error(http: int, code: int, message: str) -> JSONResponse:
        status = dict(ok_status, type=1, code=code, errorCode=code, error=message,
                      devMsg=fake.refuse(message), userMsg=message)
        return JSONResponse({"status": status, "data": None}, status_code=http)

    def client_headers(request: Request, names: list[str]) -> bool:
        id_name, key_name = names[0], names[1]
        return (request.headers.get(id_name), request.headers.get(key_name)) == (fake.client_id, fake.client_secret)

    def signing_user(request: Request) -> str | None:
        if not client_headers(request, ["x-clientId", "x-clientKey"]):
            return None
        scheme, _, token = request.headers.get("AuthorizationRM", "").partition(" ")
        return fake.tokens.get(token) if scheme == "Bearer" else None

    async def login(request: Request) -> Response:
        body = await request.json()
        if not client_headers(request, ["x-clientId", "x-clientKey"]):
            return error(401, 401, "client headers")
        if (body.get("userName"), body.get("password")) != (fake.user_id, fake.password):
            return error(200, 401, "user name or password")
        return JSONResponse(sample("misa", "login.second_factor.reply"))

    async def two_factor(request: Request) -> Response:
        body = await request.json()
        if not client_headers(request, sample_headers("misa", "two_factor.request")):
            return error(401, 401, "two-factor headers are clientId/clientKey")
        if errors := shape_errors(sample("misa", "two_factor.request"), body):
            return error(400, 400, "; ".join(errors))
        if body["userName"] != fake.user_id or body["code"] != fake.otp:
            return error(200, 123, "wrong code")
        reply = sample("misa", "tokens.reply")
        token = secrets.token_urlsafe(16)
        fake.tokens[token] = fake.misa_account_id
        reply["data"].update(accessToken=secrets.token_urlsafe(16), remoteSigningAccessToken=token,
                             refreshToken=secrets.token_urlsafe(16), user={"id": fake.misa_account_id})
        return JSONResponse(reply)

    async def certificates(request: Request) -> Response:
        if signing_user(request) is None:
            return error(401, 401, "AuthorizationRM")
        reply = sample("misa", "certificates.reply")
        item = reply["data"][0]
        cert = fake.pki.cert
        item.update(userId=fake.misa_account_id, keyAlias=fake.misa_alias, certificate=b64(fake.pki.der(cert)),
                    certiticateChain=[b64(fake.pki.der(c)) for c in (cert, fake.pki.ca, fake.pki.root)],
                    effectiveDate=cert.not_valid_before_utc.isoformat(),
                    expirationDate=cert.not_valid_after_utc.isoformat())
        return JSONResponse(reply)

    async def sign(request: Request) -> Response:
        user = signing_user(request)
        if user is None:
            return error(401, 401, "x-clientId, x-clientKey and AuthorizationRM")
        body = await request.json()
        if errors := shape_errors(sample("misa", "sign.request"), body):
            return error(400, 400, "; ".join(errors))
        if body["UserId"] != user:
            return error(200, 403, "UserId is not the signing token's user.id")
        if body["CertAlias"] != fake.misa_alias:
            return error(200, 404, "CertAlias unknown")
        digests = [(d["DocumentId"], b64_digest(d["FileToSign"])) for d in body["Documents"]]
        if not digests or any(d is None for _, d in digests):
            return error(400, 400, "FileToSign must be a base64 SHA-256 digest")
        tx = fake.new_transaction(user, digests)  # type: ignore[arg-type]
        reply = sample("misa", "sign.reply")
        reply["data"]["transactionId"] = tx.id
        return JSONResponse(reply)

    async def status(request: Request) -> Response:
        user = signing_user(request)
        if user is None:
            return error(401, 401, "AuthorizationRM")
        tx = fake.transactions.get(request.path_params["tid"])
        if tx is None or tx.owner != user:
            return error(404, 404, "transaction unknown")
        outcome = fake.outcome(tx)
        name = {"approve": "status.success.reply", "pending": "status.pending.reply"}.get(outcome,
                                                                                           "status.cancelled.reply")
        reply = sample("misa", name)
        reply["data"]["transactionId"] = tx.id
        if outcome == "approve":
            reply["data"]["signatures"] = [{"documentId": d, "signature": s} for d, s in tx.signatures(fake.pki)]
        return JSONResponse(reply)

    return [Route("/api/auth/api/v1/auth/login-api", login, methods=["POST"]),
            Route("/api/auth/api/v1/auth/two-factor-auth", two_factor, methods=["POST"]),
            Route("/external/esrm/service/general/api/v1/Certificates/by-userId", certificates, methods=["GET"]),
            Route("/external/esrm/service/signing/api/v1/Signing/hash", sign, methods=["POST"]),
            Route("/external/esrm/service/signing/api/v1/Signing/status/{tid}", status, methods=["GET"])]
