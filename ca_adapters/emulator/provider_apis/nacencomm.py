"""Nacencomm CA2, emulated from integrators' code: JSON-quoted string replies, empty until the signer decides."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.provider_apis.common import b64, decode_digest, der, is_usable, matches
from ca_adapters.emulator.state import EmulatorState

NACENCOMM_MODELLED_HASH_TYPE = "HASH"
NACENCOMM_DOCUMENT_TYPES = ("XML_HD", "XML", "PDF", "Text")
NACENCOMM_MODELLED_EXPIRED = 3
NACENCOMM_MODELLED_NETWORK = ("127.0.0.1", "::1")
"""Modelled authentication: no secret is public, so the caller's address and its system code."""


def _quoted(text: str, status: int = 200) -> JSONResponse:
    """Every reply is a JSON-quoted string."""
    return JSONResponse(text, status_code=status)


def signing_api(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/api/APISigncore")
    client = api_client(state.ca.directory)

    def from_network(request: Request) -> bool:
        return request.client is not None and request.client.host in NACENCOMM_MODELLED_NETWORK

    @router.post("/Guiyeucauky_Mobilesign")
    def send(request: Request, body: dict[str, Any] = Body(...)) -> Any:
        if not from_network(request) or not matches(body.get("Mahethong"), client.client_id):
            return _quoted("ERR:HETHONG", 401)  # modelled
        display = str(body.get("Keyhethong", "")).split("|")
        if len(display) != 4:
            return _quoted("ERR:KEYHETHONG", 400)  # "{id}|{ref}|{email}|{title}", modelled error
        user = state.user(str(body.get("Masothue", "")))
        if user is None or str(body.get("Serial", "")).lower() != f"{user.certificate.serial_number:x}":
            return _quoted("ERR:CERT", 400)
        if not is_usable(state, user.certificate):
            return _quoted("ERR:CERT_REVOKED", 400)
        if body.get("Type") in NACENCOMM_DOCUMENT_TYPES:
            return _quoted("ERR:TYPE", 400)  # whole documents are not emulated: kyso sends digests
        digest = decode_digest(str(body.get("Cleartext", "")))
        if body.get("Type") != NACENCOMM_MODELLED_HASH_TYPE or digest is None:
            return _quoted("ERR:INPUT", 400)
        return _quoted(state.start(user.user_id, [("1", digest)], title=display[3]).id)

    @router.post("/Layketquaky")
    def result(Code: str) -> JSONResponse:
        tx = state.get(Code)
        if tx is None:
            return _quoted("ERR:CODE", 400)
        if tx.outcome is None and not tx.cancelled and not state.expired(tx):
            return _quoted("")  # empty while the user has not confirmed: never a success
        trangthai = 1 if tx.outcome == "approved" else -1 if tx.cancelled else 2 if tx.outcome == "refused" \
            else NACENCOMM_MODELLED_EXPIRED
        # The result's fields besides Trangthaiky are modelled.
        return _quoted(json.dumps({"Code": tx.id, "Trangthaiky": trangthai,
                                   "Chuky": b64(tx.signatures[0]) if trangthai == 1 else None,
                                   "Thongbao": {1: "Đã ký", -1: "Đã hủy", 2: "Từ chối ký"}.get(trangthai, "Hết hạn")}))

    @router.post("/Xoayeucauky_Code")
    def cancel(Code: str, phanloaiky: int = 1) -> JSONResponse:
        return _quoted("OK" if state.cancel(Code) else "ERR:CODE", 200)

    @router.post("/Capnhattrangthaihoantat_Code")
    def acknowledge(Code: str) -> JSONResponse:
        tx = state.get(Code)
        if tx is None:
            return _quoted("ERR:CODE", 400)
        tx.acknowledged = True
        return _quoted("OK")

    @router.post("/Getcert")
    def get_cert(idcts: int) -> JSONResponse:
        for user_id in state.user_ids():
            user = state.user(user_id)
            if user is not None and user.idcts == idcts:
                return _quoted(b64(der(user.certificate)))
        return _quoted("ERR:CERT", 404)

    return router
