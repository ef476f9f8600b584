"""Viettel MySign, faked from its samples.

Not sampled, answered as the samples around them suggest: the signHash reply (the status reply's
shape: ``transactionId``, status ``"0"``, signatures null); the status and certificates/info requests.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.ca_adapters.independent_fake.samples import sample, shape_errors
from tests.ca_adapters.independent_fake.state import FakeState, b64, b64_digest

SHA256_OID = "2.16.840.1.101.3.4.2.1"
RSA_OID = "1.2.840.113549.1.1.1"


def routes(fake: FakeState) -> list[Route]:
    def error(http: int, code: str, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": fake.refuse(message)}, status_code=http)

    def bearer(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return fake.tokens.get(token) if scheme == "Bearer" else None

    async def login(request: Request) -> Response:
        body = await request.json()
        if errors := shape_errors(sample("viettel", "login.request"), body):
            return error(400, "400", "; ".join(errors))
        if (body["client_id"], body["client_secret"]) != (fake.client_id, fake.client_secret) \
                or body["profile_id"] != "adss:ras:profile:001" or body["user_id"] != fake.user_id:
            return error(401, "401", "client or user unknown")
        reply = sample("viettel", "login.reply")
        token = secrets.token_urlsafe(16)
        fake.tokens[token] = body["user_id"]  # a token per user
        reply.update(access_token=token)
        return JSONResponse(reply)

    async def certificates(request: Request) -> Response:
        body = await request.json()
        user = bearer(request)
        if user is None:
            return error(401, "59033", "token rejected")
        if body.get("user_id") != user:
            return error(403, "403", "the token is another user's")
        reply = sample("viettel", "certificates_info.reply")
        cert = fake.pki.cert
        reply[0]["credential_id"] = fake.viettel_credential
        reply[0]["cert"].update(certificates=[b64(fake.pki.der(c)) for c in (cert, fake.pki.ca, fake.pki.root)],
                                serialNumber=f"{cert.serial_number:x}", subjectDN=cert.subject.rfc4514_string(),
                                issuerDN=cert.issuer.rfc4514_string(),
                                validFrom=f"{cert.not_valid_before_utc:%Y%m%d%H%M%S}+0000",
                                validTo=f"{cert.not_valid_after_utc:%Y%m%d%H%M%S}+0000")
        return JSONResponse(reply)

    async def sign_hash(request: Request) -> Response:
        body = await request.json()
        user = bearer(request)
        if user is None:
            return error(401, "59033", "token rejected")
        if errors := shape_errors(sample("viettel", "signHash.request"), body):
            return error(400, "400", "; ".join(errors))
        if (body["client_id"], body["client_secret"]) != (fake.client_id, fake.client_secret):
            return error(401, "401", "client unknown")
        if body["credentialID"] != fake.viettel_credential or user != fake.user_id:
            return error(403, "403", "credentialID is not the token's user's")
        if body["hashAlgo"] != SHA256_OID or body["signAlgo"] != RSA_OID or body["async"] not in (0, 1, 3):
            return error(400, "400", "hashAlgo, signAlgo or async not as documented")
        digests = [b64_digest(h) for h in body["hash"]]
        documents = body["documents"]
        if not digests or None in digests or not body["numSignatures"] == len(digests) == len(documents):
            return error(400, "400", "hash must hold numSignatures base64 SHA-256 digests, one per document")
        try:
            base64.b64decode(body["description"], validate=True)
            for d in documents:
                base64.b64decode(d["document_name"], validate=True)
        except (ValueError, binascii.Error):
            return error(400, "400", "description and document_name are base64")
        tx = fake.new_transaction(user, [(d["document_id"], h) for d, h in zip(documents, digests, strict=False)])
        reply = sample("viettel", "status.pending.reply")  # modelled: no signHash reply is sampled
        reply["transactionId"] = tx.id
        return JSONResponse(reply)

    async def status(request: Request) -> Response:
        body = await request.json()
        user = bearer(request)
        if user is None:
            return error(401, "59033", "token rejected")
        tx = fake.transactions.get(str(body.get("transactionId")))
        if tx is None or tx.owner != user:
            return error(404, "404", "transaction unknown for this user")
        outcome = fake.outcome(tx)
        if outcome == "approve":
            reply = sample("viettel", "status.signed.reply")
            reply["signatures"] = [s for _, s in tx.signatures(fake.pki)]
        else:
            reply = sample("viettel", "status.pending.reply" if outcome == "pending"
                           else "status.rejected_numeric.reply")
        reply["transactionId"] = tx.id
        return JSONResponse(reply)

    return [Route("/vtss/service/ras/v1/login", login, methods=["POST"]),
            Route("/vtss/service/certificates/info", certificates, methods=["POST"]),
            Route("/vtss/service/signHash", sign_hash, methods=["POST"]),
            Route("/vtss/service/requests/status", status, methods=["POST"])]
