"""VNPT SmartCA (service-provider API SP769): its replies and callback read, and its client."""

from __future__ import annotations

import uuid
from typing import Any

from ca_adapters.remote_clients.wire import json_object, json_reply, unb64, unknown_status
from ca_adapters.remote_signing import (
    CallbackEvent,
    CertificateOffer,
    DigestToSign,
    ProviderApiError,
    ProviderReplyMalformed,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
    choose_certificate,
)

VNPT_SIGNED = "SUCCESS"
VNPT_WAITING = "sig_wait_for_user_confirm"
VNPT_MODELLED_REJECTED = "sig_rejected"
"""Modelled: VNPT documents no message for a refusal."""
VNPT_MODELLED_EXPIRED = "sig_expired"
"""Modelled: nor for a transaction that ran out of time."""
VNPT_SEAL = "ESEAL"


def parse_vnpt_certificates(reply: Any) -> list[CertificateOffer]:
    """``get_certificate``'s ``data.user_certificates``: each a personal certificate or an ``ESEAL``."""
    body = json_object(reply, "VNPT get_certificate")
    if body.get("status_code") != 200:
        raise ProviderApiError(f"VNPT: {body.get('status_code')} {body.get('message')}")
    certs = (json_object(body.get("data") or {}, "VNPT data")).get("user_certificates") or []
    offers = []
    for cert in certs:
        chain = cert.get("chain_data") or {}
        der = tuple(unb64(c) for c in (cert.get("cert_data"), chain.get("ca_cert"), chain.get("root_cert")) if c)
        status = str(cert.get("cert_status_code") or "").upper()
        offers.append(CertificateOffer(str(cert.get("serial_number") or ""), der,
                                       personal=str(cert.get("service_type", "")).upper() != VNPT_SEAL,
                                       valid=status == "VALID"))
    return offers


def _vnpt_files(files: Any) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    if not isinstance(files, list) or not files:
        return (), ()
    return (tuple(unb64(f.get("signature_value")) for f in files), tuple(str(f.get("doc_id", "")) for f in files))


def parse_vnpt_status(reply: Any) -> RemoteResult:
    """``sign/{tranId}/status``: ``message`` ``"SUCCESS"`` with ``data.signatures`` once signed."""
    body = json_object(reply, "VNPT status")
    message = str(body.get("message") or "")
    if body.get("status_code") != 200:
        return RemoteResult(RemoteStatus.FAILED, detail=f"VNPT: {body.get('status_code')} {message}")
    signatures, ids = _vnpt_files((body.get("data") or {}).get("signatures"))
    if signatures:
        return RemoteResult(RemoteStatus.SUCCESS, signatures, detail=message, document_ids=ids)
    if message.upper() == VNPT_SIGNED:
        raise ProviderReplyMalformed("VNPT says SUCCESS without signatures")
    if message == VNPT_WAITING:
        return RemoteResult(RemoteStatus.PENDING, detail=message)
    known = {VNPT_MODELLED_REJECTED: RemoteStatus.REJECTED, VNPT_MODELLED_EXPIRED: RemoteStatus.EXPIRED}
    return RemoteResult(known[message], detail=message) if message in known else unknown_status("VNPT", message)


def parse_vnpt_callback(body: Any) -> CallbackEvent:
    """§3.5: ``{sp_id, status_code, message, transaction_id, signed_files:[{doc_id, signature_value, ...}]}``."""
    event = json_object(body, "VNPT callback")
    transaction_id = str(event.get("transaction_id") or "")
    if not transaction_id:
        raise ProviderReplyMalformed("VNPT callback without transaction_id")
    signatures, ids = _vnpt_files(event.get("signed_files"))
    message = str(event.get("message") or "")
    if event.get("status_code") == 200 and signatures:
        result = RemoteResult(RemoteStatus.SUCCESS, signatures, detail=message, document_ids=ids)
    else:
        result = parse_vnpt_status({"status_code": event.get("status_code"), "message": message, "data": {}}) \
            if message.upper() != VNPT_SIGNED else RemoteResult(RemoteStatus.FAILED, detail="VNPT: SUCCESS without files")
    return CallbackEvent(transaction_id, f"{transaction_id}:{event.get('status_code')}:{message}"[:190], result)


class VnptClient(RemoteSigningClient):
    """VNPT SmartCA SP769: SP credentials in every body, hex digests, the outcome in ``status_code``."""

    POLL_SECONDS = 10.0  # integrators poll every 10 s for about 4 minutes

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = json_object(json_reply(self.http.post(
            path, json={"sp_id": self.client_id, "sp_password": self.client_secret, **body})), "VNPT")
        if reply.get("status_code") != 200:  # HTTP is 200 either way
            raise ProviderApiError(f"VNPT: {reply.get('status_code')} {reply.get('message')}")
        return reply

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        body: dict[str, Any] = {"user_id": user_id, "transaction_id": uuid.uuid4().hex}
        if serial_hex:
            body["serial_number"] = serial_hex
        offers = parse_vnpt_certificates(self._call("/v1/credentials/get_certificate", body))
        return choose_certificate(user_id, offers, serial_hex)

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        reply = self._call("/v1/signatures/sign", {
            "user_id": credential.user_id, "transaction_id": uuid.uuid4().hex, "transaction_desc": description,
            "serial_number": credential.credential_ref,
            "sign_files": [{"data_to_be_signed": d.digest.hex(), "doc_id": d.document_id, "file_type": "pdf",
                            "sign_type": "hash"} for d in digests]})
        transaction_id = (reply.get("data") or {}).get("transaction_id")
        if not transaction_id:
            raise ProviderReplyMalformed("VNPT sign reply without data.transaction_id")
        return str(transaction_id)

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        response = self.http.post(f"/v1/signatures/sign/{transaction_id}/status", content=b"")
        return parse_vnpt_status(json_reply(response))

    def parse_callback(self, body: Any) -> CallbackEvent:
        event = json_object(body, "VNPT callback")
        if str(event.get("sp_id")) != self.client_id:
            raise ProviderApiError("VNPT callback for another sp_id")
        return parse_vnpt_callback(event)

    def callback_reply(self, accepted: bool, message: str) -> dict[str, Any]:
        # Modelled: §3.5 shows the provider's body, not the answer it expects.
        return {"status_code": 200 if accepted else 400, "message": message}
