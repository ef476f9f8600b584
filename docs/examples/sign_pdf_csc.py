"""Sign a PDF through kyso's CSC API with pyHanko (PAdES), two ways.

    python docs/examples/sign_pdf_csc.py BASE_URL CLIENT_ID CLIENT_SECRET CREDENTIAL_ID IN.pdf OUT_DIR

1. pyHanko's own ``CSCSigner``, built by hand. pyHanko never calls ``credentials/authorize``: kyso's
   ``KysoAuthorizationManager`` does, with the hashes about to be signed, and kyso waits for the
   signer to approve on the phone. An RSA-PSS-only credential (``credentials/info`` offers only
   1.2.840.113549.1.1.10) needs ``prefer_pss=True``: pyHanko would otherwise ask for PKCS#1 v1.5.
2. ``kyso_client.csc_signer(...)``, a coroutine that does the same and picks ``prefer_pss`` itself.

Each writes OUT_DIR/<way>.pdf.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.signers.csc_signer import CSCServiceSessionInfo, CSCSigner, fetch_certs_in_csc_credential

from kyso_client import KysoAuthorizationManager, KysoClient, csc_signer


async def sign(signer: signers.Signer, source: Path, target: Path, field: str) -> None:
    with source.open("rb") as fh:
        meta = signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES)
        signed = await signers.PdfSigner(meta, signer=signer).async_sign_pdf(IncrementalPdfFileWriter(fh))
    target.write_bytes(signed.getvalue())


async def main(base_url: str, client_id: str, client_secret: str, credential_id: str, source: Path,
               out_dir: Path) -> None:
    token = KysoClient(base_url, client_id=client_id, client_secret=client_secret).access_token  # OAuth2 client credentials
    async with aiohttp.ClientSession() as http:
        # 1. pyHanko's CSCSigner by hand (kyso's CSC v2 API; "v1" works too).
        session = CSCServiceSessionInfo(base_url, credential_id, oauth_token=token, api_ver="v2")
        credential = await fetch_certs_in_csc_credential(http, session)  # credentials/info: certificate, algorithms
        manager = KysoAuthorizationManager(session, credential, http, description="Ủy nhiệm chi UNC-7")
        pss_only = credential.supported_mechanisms == frozenset({"rsassa_pss"})
        by_hand = CSCSigner(http, auth_manager=manager, prefer_pss=pss_only)
        await sign(by_hand, source, out_dir / "by-hand.pdf", "KeToanTruong")

        # 2. The same in one call.
        ready = await csc_signer(http, base_url, token, credential_id, api_ver="v2", description="Ủy nhiệm chi UNC-7")
        await sign(ready, source, out_dir / "kyso-client.pdf", "KeToanTruong")


if __name__ == "__main__":
    url, cid, secret, credential_id, pdf, out = sys.argv[1:7]
    asyncio.run(main(url, cid, secret, credential_id, Path(pdf), Path(out)))
