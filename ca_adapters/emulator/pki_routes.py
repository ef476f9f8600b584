"""HTTP routes of an emulated provider's PKI: CA certificate, CRLs, OCSP and the RFC 3161 TSA."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, HTTPException, Request, Response

from ca_adapters import pki_services
from ca_adapters.emulator.state import EmulatorState


def pki_router(state: EmulatorState) -> APIRouter:
    router = APIRouter()
    ca = state.ca

    @router.get("/ca.cer")
    def ca_certificate() -> Response:
        return Response(ca.certificate().public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert")

    @router.get("/crl/ca.crl")
    def ca_crl() -> Response:
        state.check_up("crl")
        return Response(pki_services.crl(ca), media_type="application/pkix-crl")

    @router.get("/crl/root.crl")
    def root_crl() -> Response:
        state.check_up("crl")
        return Response(pki_services.root_crl(ca), media_type="application/pkix-crl")

    @router.post("/ocsp")
    async def ocsp_post(request: Request) -> Response:
        state.check_up("ocsp")
        return Response(pki_services.ocsp_response(ca, await request.body()), media_type="application/ocsp-response")

    @router.get("/ocsp/{encoded:path}")
    def ocsp_get(encoded: str) -> Response:
        state.check_up("ocsp")
        try:
            request_der = base64.b64decode(encoded)
        except ValueError as exc:
            raise HTTPException(400, "not base64") from exc
        return Response(pki_services.ocsp_response(ca, request_der), media_type="application/ocsp-response")

    @router.post("/tsa")
    async def timestamp(request: Request) -> Response:
        state.check_up("tsa")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/timestamp-query":
            raise HTTPException(415, "send application/timestamp-query")
        try:
            body = pki_services.timestamp_response(ca, await request.body())
        except pki_services.MalformedPkiRequest as exc:
            raise HTTPException(400, exc.message) from exc
        return Response(body, media_type="application/timestamp-reply")

    return router
