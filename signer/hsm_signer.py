"""A KeySigner over a key held in the PKCS#11 token."""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import x509

from hsm import Hsm, SignatureScheme
from signer.algorithms import PssParams
from signer.keysigner import KeySigner


class HsmKeySigner(KeySigner):
    def __init__(
        self,
        hsm: Hsm,
        key_id: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        scheme: SignatureScheme | None = None,
    ) -> None:
        super().__init__(certificate, chain, scheme)
        self._hsm = hsm
        self.key_id = key_id

    def _sign_digest(self, digest: bytes, hash_name: str, scheme: SignatureScheme, pss: PssParams | None) -> bytes:
        return self._sign_digests([digest], hash_name, scheme, pss)[0]

    def _sign_digests(self, digests: Sequence[bytes], hash_name: str, scheme: SignatureScheme,
                      pss: PssParams | None) -> list[bytes]:
        # The whole batch in one call: a key look-up per HSM session, not per signature.
        return self._hsm.sign_digests(self.key_id, digests, hash_name, scheme,
                                      pss_salt_length=pss.salt_length if pss else None)
