"""VNPT SmartCA's service-provider API "SP769", emulated: always HTTP 200, the outcome in ``status_code``."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
from cryptography import x509
from fastapi import APIRouter, Body

from ca_adapters.emulator.api_client import api_client
from ca_adapters.emulator.provider_apis.common import b64, decode_digest, der, is_usable, matches
from ca_adapters.emulator.state import CallbackTarget, EmulatorState, ProviderUser, Transaction

VNPT_PERSONAL = "SMARTCA"  # modelled: only "ESEAL" (an organisation seal) is published
VNPT_MODELLED_REJECTED = "sig_rejected"
VNPT_MODELLED_EXPIRED = "sig_expired"


def _vnpt_signed_files(tx: Transaction) -> list[dict[str, Any]]:
    return [{"doc_id": doc, "signature_value": b64(sig), "timestamp_signature": None}
            for (doc, _), sig in zip(tx.digests, tx.signatures)]


def _vnpt_message(state: EmulatorState, tx: Transaction) -> str:
    if tx.outcome == "approved":
        return "SUCCESS"  # integrators poll until they see it
    if tx.outcome == "refused" or tx.cancelled:
        return VNPT_MODELLED_REJECTED
    return VNPT_MODELLED_EXPIRED if state.expired(tx) else "sig_wait_for_user_confirm"


def signing_api(state: EmulatorState) -> APIRouter:
    router = APIRouter(prefix="/v1")
    client = api_client(state.ca.directory)

    def reply(status_code: int, message: str, data: Any = None) -> dict[str, Any]:
        # Always HTTP 200: the outcome is status_code in the body.
        return {"status_code": status_code, "message": message, "data": data}

    def authenticate(body: dict[str, Any]) -> dict[str, Any] | None:
        if not matches(body.get("sp_id"), client.client_id) \
                or not matches(body.get("sp_password"), client.client_secret):
            return reply(401, "SP_CREDENTIAL_INVALID")
        return None

    def entry(user: ProviderUser, cert: x509.Certificate, service_type: str, name: str) -> dict[str, Any]:
        usable = is_usable(state, cert)
        return {
            "service_type": service_type, "service_name": name, "cert_id": str(uuid.uuid5(uuid.NAMESPACE_OID, str(cert.serial_number))),
            "cert_status": "Đang hoạt động" if usable else "Đã thu hồi",
            "cert_status_code": "VALID" if usable else "REVOKED",  # "REVOKED" modelled
            "serial_number": f"{cert.serial_number:x}", "cert_subject": cert.subject.rfc4514_string(),
            "cert_valid_from": cert.not_valid_before_utc.isoformat(), "cert_valid_to": cert.not_valid_after_utc.isoformat(),
            "cert_data": b64(der(cert)), "transaction_id": secrets.token_hex(8),
            "chain_data": {"ca_cert": b64(der(user.chain[0])), "root_cert": b64(der(user.chain[1]))},
        }

    @router.post("/credentials/get_certificate")
    def get_certificate(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        if user is None:
            return reply(200, "success", {"user_certificates": []})
        certs = []
        if user.seal is not None:  # the organisation's seal comes first: a blind pick would take it
            certs.append(entry(user, user.seal.certificate, "ESEAL", "SmartCA eSeal"))
        certs.append(entry(user, user.certificate, VNPT_PERSONAL, "SmartCA cá nhân"))
        if body.get("serial_number"):
            certs = [c for c in certs if c["serial_number"] == str(body["serial_number"]).lower()]
        return reply(200, "success", {"user_certificates": certs})

    @router.post("/signatures/sign")
    def sign(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (error := authenticate(body)) is not None:
            return error
        user = state.user(str(body.get("user_id", "")))
        files = body.get("sign_files")
        transaction_id = body.get("transaction_id")
        if user is None or not isinstance(files, list) or not files or not isinstance(transaction_id, str):
            return reply(400, "BAD_REQUEST")
        cert = user.certificate
        if user.seal is not None and str(body.get("serial_number", "")).lower() == f"{user.seal.certificate.serial_number:x}":
            cert = user.seal.certificate
        if not is_usable(state, cert):
            return reply(403, "CREDENTIAL_STATUS_INVALID")
        digests = []
        for f in files:
            digest = decode_digest(str(f.get("data_to_be_signed", "")), hex_encoded=True)
            if digest is None or f.get("sign_type") != "hash":
                return reply(400, "BAD_REQUEST")
            digests.append((str(f.get("doc_id", "")), digest))
        tx = state.start(user.user_id, digests, transaction_id, serial=cert.serial_number, callback=True,
                         title=str(body.get("transaction_desc", "")))
        return reply(200, "sig_wait_for_user_confirm", {"transaction_id": tx.id, "tran_code": secrets.token_hex(3)})

    @router.post("/signatures/sign/{transaction_id}/status")
    def status(transaction_id: str) -> dict[str, Any]:
        # Status by POST with an empty body: no SP credentials are sent here.
        tx = state.get(transaction_id)
        if tx is None:
            return reply(400, "BAD_REQUEST")
        signed = tx.outcome == "approved"
        return reply(200, _vnpt_message(state, tx),
                     {"transaction_id": tx.id, "signatures": _vnpt_signed_files(tx) if signed else None})

    return router


def vnpt_callback_body(state: EmulatorState, tx: Transaction) -> dict[str, Any]:
    """§3.5 of the integration document."""
    signed = tx.outcome == "approved"
    return {"sp_id": api_client(state.ca.directory).client_id, "status_code": 200, "message": _vnpt_message(state, tx),
            "transaction_id": tx.id, "signed_files": _vnpt_signed_files(tx) if signed else []}


def send_callback(state: EmulatorState, tx: Transaction, target: CallbackTarget) -> int:
    # No signature or token is published for §3.5, so none is sent: the URL carries the integrator's secret.
    return httpx.post(target.url, json=vnpt_callback_body(state, tx), timeout=10).status_code
