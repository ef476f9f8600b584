"""A KeySigner over a key held in the PKCS#11 token."""

from __future__ import annotations

from collections.abc import Sequence

from asn1crypto import x509

from hsm import Hsm, SignScheme
from signer.algorithms import PssParams, Scheme
from signer.keysigner import KeySigner

_HSM_SCHEME = {
    Scheme.RSA_PKCS1_V15: SignScheme.RSA_PKCS1_V15,
    Scheme.RSA_PSS: SignScheme.RSA_PSS,
    Scheme.ECDSA: SignScheme.ECDSA,
}


class HsmKeySigner(KeySigner):
    def __init__(
        self,
        hsm: Hsm,
        key_id: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        scheme: Scheme | None = None,
    ) -> None:
        super().__init__(certificate, chain, scheme)
        self._hsm = hsm
        self.key_id = key_id

    def _sign_digest(self, digest: bytes, hash_name: str, scheme: Scheme, pss: PssParams | None) -> bytes:
        return self._sign_digests([digest], hash_name, scheme, pss)[0]

    def _sign_digests(self, digests: Sequence[bytes], hash_name: str, scheme: Scheme,
                      pss: PssParams | None) -> list[bytes]:
        # The whole batch in one call: a key look-up per HSM session, not per signature.
        return self._hsm.sign_digests(self.key_id, digests, hash_name, _HSM_SCHEME[scheme],
                                      pss_salt_length=pss.salt_length if pss else None)
