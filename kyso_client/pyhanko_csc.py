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
    """Asks kyso for a SAD bound to exactly the hashes of each batch; kyso waits for the signer.

    Give it to pyHanko's ``CSCSigner(http, auth_manager=..., prefer_pss=...)``: pyHanko itself never
    calls ``credentials/authorize``. ``description`` is shown on the signer's phone. A refusal, or no
    answer within ``AUTHORIZE_TIMEOUT`` seconds, raises ``PermissionError`` (``access_denied``).
    """

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
    """A ready pyHanko ``CSCSigner`` for one kyso credential; a coroutine (it reads ``credentials/info``).

    ``http``: the aiohttp session pyHanko signs through (keep it open while signing).
    ``base_url``: kyso's root, e.g. ``https://kyso.example`` (the CSC API is under ``/csc/{api_ver}``).
    ``access_token``: a bearer token from ``/oauth2/token`` (client credentials, the ``sign`` scope).
    ``credential_id``: from ``credentials/list`` or ``GET /v1/credentials``.
    ``api_ver``: ``"v1"`` (CSC 1.0.4.0) or ``"v2"`` (CSC 2.0).
    ``batch_size``: how many signatures one authorization covers; kyso's signer approves them at once
    (at most the credential's ``multisign``). With more than one, sign the documents concurrently
    (``asyncio.gather``): the batch is sent when it is full.
    ``description``: what the signer's phone shows beside the request (e.g. the payment order's number).

    A credential whose key signs only RSA-PSS gets ``prefer_pss=True`` (pyHanko's default would ask for
    PKCS#1 v1.5, which kyso refuses for it); build ``CSCSigner`` yourself with
    :class:`KysoAuthorizationManager` to choose otherwise. ``docs/examples/sign_pdf_csc.py`` shows both.
    """
    session_info = CSCServiceSessionInfo(base_url.rstrip("/"), credential_id, oauth_token=access_token,
                                         api_ver=api_ver)
    credential_info = await fetch_certs_in_csc_credential(http, session_info)
    manager = KysoAuthorizationManager(session_info, credential_info, http, description)
    pss_only = credential_info.supported_mechanisms == frozenset({"rsassa_pss"})
    return CSCSigner(http, auth_manager=manager, batch_size=batch_size, batch_autocommit=True, prefer_pss=pss_only)
