"""Nacencomm CA2, faked from its samples.

Not sampled, answered as the samples around them suggest: Getcert (``?idcts=``, a quoted base64
DER), ``/ca.cer``, the request code reply, the acknowledgement.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.ca_adapters.independent_fake.samples import sample, shape_errors
from tests.ca_adapters.independent_fake.state import FakeState, b64, b64_digest


def routes(fake: FakeState) -> list[Route]:
    def quoted(text: str) -> Response:  # every reply a JSON-quoted string
        return Response(json.dumps(text), media_type="application/json")

    def error(message: str) -> Response:
        return quoted(f"ERR: {fake.refuse(message)}")

    async def get_cert(request: Request) -> Response:
        if request.query_params.get("idcts") != str(fake.idcts):
            return error("idcts unknown")
        return quoted(b64(fake.pki.der(fake.pki.cert)))

    async def ca_cert(request: Request) -> Response:
        return Response(fake.pki.der(fake.pki.ca), media_type="application/pkix-cert")

    async def send(request: Request) -> Response:
        body = await request.json()
        if errors := shape_errors(sample("nacencomm", "send.request"), body):
            return error("; ".join(errors))
        if body["Mahethong"] != fake.client_id or body["Masothue"] != fake.user_id:
            return error("Mahethong or Masothue unknown")
        if str(body["Serial"]).lower() != f"{fake.pki.cert.serial_number:x}":
            return error("Serial is not the signer's certificate")
        digest = b64_digest(body["Cleartext"])
        if body["Type"] != "HASH" or digest is None:
            return error("Type HASH carries a base64 SHA-256 digest in Cleartext")
        if len(str(body["Keyhethong"]).split("|")) != 4:
            return error("Keyhethong is id|ref|email|title")
        tx = fake.new_transaction(fake.user_id, [(str(body["Keyhethong"]).split("|")[0], digest)])
        return quoted(tx.id)

    async def result(request: Request) -> Response:
        tx = fake.transactions.get(request.query_params.get("Code", ""))
        if tx is None:
            return error("Code unknown")
        outcome = fake.outcome(tx)
        if outcome == "pending":
            return Response(sample("nacencomm", "result.pending.reply"), media_type="application/json")
        name = "result.signed.reply" if outcome == "approve" else "result.refused.reply"
        documented = json.loads(json.loads(sample("nacencomm", name).replace("$SIG", "")))
        documented["Code"] = tx.id
        if outcome == "approve":
            documented["Chuky"] = tx.signatures(fake.pki)[0][1]
        return quoted(json.dumps(documented, ensure_ascii=False))

    async def acknowledge(request: Request) -> Response:
        tx = fake.transactions.get(request.query_params.get("Code", ""))
        if tx is None:
            return error("Code unknown")
        tx.acknowledged = True
        return quoted("OK")

    return [Route("/api/APISigncore/Getcert", get_cert, methods=["POST", "GET"]),
            Route("/ca.cer", ca_cert, methods=["GET"]),
            Route("/api/APISigncore/Guiyeucauky_Mobilesign", send, methods=["POST"]),
            Route("/api/APISigncore/Layketquaky", result, methods=["POST"]),
            Route("/api/APISigncore/Capnhattrangthaihoantat_Code", acknowledge, methods=["POST"])]
