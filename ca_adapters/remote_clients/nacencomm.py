"""Nacencomm CA2, known from integrators' code only: its quoted-string replies read, and its client."""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509

from ca_adapters.remote_clients.wire import b64, unb64, unknown_status
from ca_adapters.remote_signing import (
    DigestToSign,
    ProviderApiError,
    ProviderReplyMalformed,
    RemoteCredential,
    RemoteResult,
    RemoteSigningClient,
    RemoteStatus,
)

NACENCOMM_BASE = "/api/APISigncore"
NACENCOMM_MODELLED_HASH_TYPE = "HASH"
"""Modelled: the public code sends whole documents (``XML_HD``, ``XML``, ``PDF``, ``Text``), never a hash."""
NACENCOMM_WAITING, NACENCOMM_SIGNED = 0, 1
NACENCOMM_REFUSED = (2, -1, -2)
NACENCOMM_MODELLED_EXPIRED = 3
"""Modelled: no expiry state is public."""


def nacencomm_text(body: str) -> str:
    """A reply is a JSON-quoted string; some integrators show it quoted twice: unquote until plain."""
    text = body.strip()
    for _ in range(2):
        if text.startswith('"'):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ProviderReplyMalformed("Nacencomm reply is not a JSON-quoted string") from exc
            if not isinstance(value, str):
                raise ProviderReplyMalformed("Nacencomm reply is not a string")
            text = value
    return text


def parse_nacencomm_result(body: str) -> RemoteResult:
    """``Layketquaky``: an empty quoted string while pending (never success), else the result with ``Trangthaiky``."""
    text = nacencomm_text(body)
    if text == "":
        return RemoteResult(RemoteStatus.PENDING)
    if text.startswith("ERR"):
        return RemoteResult(RemoteStatus.FAILED, detail=f"Nacencomm: {text[:100]}")
    if text.startswith("<"):
        raise ProviderReplyMalformed("Nacencomm answered markup, not a quoted string")
    try:
        result = json.loads(text) if text.startswith("{") else None
    except ValueError as exc:
        raise ProviderReplyMalformed("Nacencomm result is not JSON") from exc
    if result is None:  # an older reading: the bare base64 signature
        return RemoteResult(RemoteStatus.SUCCESS, (unb64(text),))
    state = result.get("Trangthaiky")
    try:
        state = int(state)
    except (TypeError, ValueError):
        return unknown_status("Nacencomm", state)
    message = str(result.get("Thongbao") or "")
    if state == NACENCOMM_SIGNED:
        if not result.get("Chuky"):
            raise ProviderReplyMalformed("Nacencomm signed without a signature")
        return RemoteResult(RemoteStatus.SUCCESS, (unb64(result["Chuky"]),), detail=message)
    if state == NACENCOMM_WAITING:
        return RemoteResult(RemoteStatus.PENDING, detail=message)
    if state in NACENCOMM_REFUSED:
        return RemoteResult(RemoteStatus.REJECTED, detail=f"Nacencomm: {state} {message}".strip())
    if state == NACENCOMM_MODELLED_EXPIRED:
        return RemoteResult(RemoteStatus.EXPIRED, detail=f"Nacencomm: {state} {message}".strip())
    return unknown_status("Nacencomm", state)


def nacencomm_display(request_id: str, reference: str, email: str, title: str) -> str:
    """``Keyhethong``: not a secret but ``"{id}|{ref}|{email}|{title}"``; the phone app shows the title."""
    return "|".join(part.replace("|", "/") for part in (request_id, reference, email, title))


class NacencommClient(RemoteSigningClient):
    """Nacencomm CA2: POSTs, JSON-quoted string replies, an empty one until done, then an acknowledgement.

    No secret appears in any public request: authentication is modelled as the network (an
    allowlisted address) and the system code ``Mahethong``.
    """

    max_digests = 1
    POLL_SECONDS = 5.0  # modelled: no cadence is public

    def _post(self, call: str, params: dict[str, Any], body: dict[str, Any] | None = None) -> str:
        response = self.http.post(f"{NACENCOMM_BASE}/{call}", params=params, json=body)
        if response.headers.get("content-type", "").startswith("text/html"):
            raise ProviderReplyMalformed(f"Nacencomm {call} answered HTML")
        text = nacencomm_text(response.text)
        if response.status_code != 200 or text.startswith("ERR"):
            raise ProviderApiError(f"Nacencomm {call}: {text[:100] or response.status_code}")
        return text

    def credential(self, user_id: str, serial_hex: str = "") -> RemoteCredential:
        """``serial_hex`` here is Nacencomm's own certificate id, ``idcts`` (an integer)."""
        if not serial_hex.isdigit():
            raise ProviderApiError("Nacencomm names certificates by an integer id (idcts)")
        der = unb64(self._post("Getcert", {"idcts": int(serial_hex)}))
        ca = self.http.get("/ca.cer")  # modelled: the chain is the provider's published CA certificate
        serial = f"{x509.load_der_x509_certificate(der).serial_number:x}"
        return RemoteCredential(user_id, serial, (der, ca.content))

    def start(self, credential: RemoteCredential, digests: list[DigestToSign], description: str) -> str:
        if len(digests) != 1:
            raise ProviderApiError("Nacencomm signs one digest per request")
        [digest] = digests
        code = self._post("Guiyeucauky_Mobilesign", {}, {
            "Serial": credential.credential_ref, "Masothue": credential.user_id, "Cleartext": b64(digest.digest),
            "Mahethong": self.client_id,
            "Keyhethong": nacencomm_display(digest.document_id, description[:24], "", digest.name or description),
            "Linkfile_goc": "", "Email": "", "Type": NACENCOMM_MODELLED_HASH_TYPE})
        if not code:
            raise ProviderReplyMalformed("Nacencomm answered an empty request code")
        return code

    def poll(self, credential: RemoteCredential, transaction_id: str) -> RemoteResult:
        response = self.http.post(f"{NACENCOMM_BASE}/Layketquaky", params={"Code": transaction_id})
        if response.status_code != 200:
            raise ProviderApiError(f"Nacencomm Layketquaky: HTTP {response.status_code}")
        if response.headers.get("content-type", "").startswith("text/html"):
            raise ProviderReplyMalformed("Nacencomm Layketquaky answered HTML")
        result = parse_nacencomm_result(response.text)
        if result.status is not RemoteStatus.PENDING and not result.anomaly:
            self.acknowledge(transaction_id)
        return result

    def acknowledge(self, transaction_id: str) -> None:
        """``Capnhattrangthaihoantat_Code``: tell Nacencomm the result was fetched."""
        try:
            self._post("Capnhattrangthaihoantat_Code", {"Code": transaction_id})
        except ProviderApiError:
            pass  # the result is ours already; the provider keeps its record a little longer

    def cancel(self, transaction_id: str) -> bool:
        try:
            return self._post("Xoayeucauky_Code", {"Code": transaction_id, "phanloaiky": 1}) != ""
        except ProviderApiError:
            return False
