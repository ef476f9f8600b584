"""pyHanko's ``CSCSigner`` against kyso: an authorization manager that calls ``credentials/authorize``
(pyHanko never calls it itself) with the hashes about to be signed (SCAL2 hash pinning).
"""

from __future__ import annotations

import aiohttp
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)

AUTHORIZE_TIMEOUT = 180


class KysoAuthorizationManager(CSCAuthorizationManager):
    """Asks kyso for a SAD bound to exactly the hashes of each batch; kyso waits for the signer."""

    def __init__(self, session_info: CSCServiceSessionInfo, credential_info: CSCCredentialInfo,
                 http: aiohttp.ClientSession, description: str | None = None) -> None:
        super().__init__(session_info, credential_info)
        self._http = http
        self._description = description

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        body = self.format_csc_auth_request(hash_b64s=hash_b64s, description=self._description)
        url = self.csc_session_info.endpoint_url("credentials/authorize")
        timeout = aiohttp.ClientTimeout(total=AUTHORIZE_TIMEOUT)
        async with self._http.post(url, json=body, headers=self.csc_session_info.auth_headers,
                                   timeout=timeout) as response:
            data = await response.json()
            if response.status >= 400:
                raise PermissionError(f"{data.get('error')}: {data.get('error_description')}")
        return self.parse_csc_auth_response(data)


async def csc_signer(http: aiohttp.ClientSession, base_url: str, access_token: str, credential_id: str, *,
                     api_ver: str = "v1", batch_size: int = 1, description: str | None = None) -> CSCSigner:
    """A ready ``CSCSigner`` for one kyso credential (``base_url`` is the service root)."""
    session_info = CSCServiceSessionInfo(base_url.rstrip("/"), credential_id, oauth_token=access_token,
                                         api_ver=api_ver)
    credential_info = await fetch_certs_in_csc_credential(http, session_info)
    manager = KysoAuthorizationManager(session_info, credential_info, http, description)
    pss_only = credential_info.supported_mechanisms == frozenset({"rsassa_pss"})
    return CSCSigner(http, auth_manager=manager, batch_size=batch_size, batch_autocommit=True, prefer_pss=pss_only)
