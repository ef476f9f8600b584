"""VNPT SmartCA, faked from its samples.

Not sampled, answered as the samples around it suggest: the status request (POST
``{sign path}/{transaction_id}/status``, no body); only ``/status`` is sampled.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.ca_adapters.independent_fake.samples import sample, shape_errors
from tests.ca_adapters.independent_fake.state import FakeState, b64


def _hex_digest(value: Any) -> bytes | None:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def routes(fake: FakeState) -> list[Route]:
    def error(code: int, message: str) -> JSONResponse:  # HTTP 200 either way, as the bad-credentials sample
        body = sample("vnpt", "status.bad_credentials.reply")
        body.update(status_code=code, message=fake.refuse(message), data=None)
        return JSONResponse(body)

    async def body_of(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def authenticated(body: dict[str, Any]) -> bool:
        return body.get("sp_id") == fake.client_id and body.get("sp_password") == fake.client_secret

    async def get_certificate(request: Request) -> Response:
        body = await body_of(request)
        if body is None or not authenticated(body):
            return error(401, "SP_CREDENTIAL_INVALID")
        if body.get("user_id") != fake.user_id or not isinstance(body.get("transaction_id"), str):
            return error(400, "user_id unknown or transaction_id missing")
        reply = sample("vnpt", "get_certificate.reply")
        seal, personal = reply["data"]["user_certificates"]
        chain = {"ca_cert": b64(fake.pki.der(fake.pki.ca)), "root_cert": b64(fake.pki.der(fake.pki.root))}
        for entry, cert in ((seal, fake.pki.seal), (personal, fake.pki.cert)):
            entry.update(serial_number=f"{cert.serial_number:x}", cert_data=b64(fake.pki.der(cert)),
                         chain_data=dict(chain), cert_subject=cert.subject.rfc4514_string(),
                         cert_valid_from=cert.not_valid_before_utc.isoformat(),
                         cert_valid_to=cert.not_valid_after_utc.isoformat(),
                         transaction_id=str(body["transaction_id"]))
        return JSONResponse(reply)

    async def sign(request: Request) -> Response:
        body = await body_of(request)
        if body is None or not authenticated(body):
            return error(401, "SP_CREDENTIAL_INVALID")
        if errors := shape_errors(sample("vnpt", "sign.request"), body):
            return error(400, "; ".join(errors))
        if body["user_id"] != fake.user_id:
            return error(400, "user_id unknown")
        if str(body["serial_number"]).lower() != f"{fake.pki.cert.serial_number:x}":
            return error(400, "serial_number is not the signer's personal certificate")
        digests = []
        for item in body["sign_files"]:
            digest = _hex_digest(item["data_to_be_signed"])
            if digest is None or item["sign_type"] != "hash":
                return error(400, "data_to_be_signed must be a hex SHA-256 digest with sign_type hash")
            digests.append((item["doc_id"], digest))
        if not digests:
            return error(400, "no sign_files")
        tx = fake.new_transaction(fake.user_id, digests)
        reply = sample("vnpt", "sign.reply")
        reply["data"].update(transaction_id=tx.id, tran_code=secrets.token_hex(3))
        return JSONResponse(reply)

    async def status(request: Request) -> Response:
        tx = fake.transactions.get(request.path_params["tid"])
        if tx is None:
            return error(404, "transaction not found")
        outcome = fake.outcome(tx)
        if outcome == "approve":
            reply = sample("vnpt", "status.signed.reply")
            template = reply["data"]["signatures"][0]
            reply["data"]["signatures"] = [{**template, "doc_id": d, "signature_value": s}
                                           for d, s in tx.signatures(fake.pki)]
        else:
            reply = sample("vnpt", "status.pending.reply" if outcome == "pending" else "status.rejected.reply")
        reply["data"]["transaction_id"] = tx.id
        return JSONResponse(reply)

    return [Route("/v1/credentials/get_certificate", get_certificate, methods=["POST"]),
            Route("/v1/signatures/sign", sign, methods=["POST"]),
            Route("/v1/signatures/sign/{tid}/status", status, methods=["POST"])]
