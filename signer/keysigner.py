"""The one signing abstraction the formats use: sign a digest with some key."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from asn1crypto import x509

from signer.algorithms import DIGEST_SIZES, PssParams, SignatureScheme, check_digest
from signer.errors import InvalidParameters, UnsupportedAlgorithm


def signature_size(certificate: x509.Certificate, scheme: SignatureScheme) -> int:
    """Upper bound of a signature value's size in bytes (ECDSA as DER)."""
    bits = certificate.public_key.bit_size
    if scheme is SignatureScheme.ECDSA:
        # DER ECDSA-Sig-Value: two INTEGERs of at most (bits/8 + 1) bytes each, with headers.
        return 2 * (bits // 8 + 3) + 3
    return (bits + 7) // 8


class KeySigner(ABC):
    """A key that signs digests, with its certificate and the intermediates above it."""

    def __init__(
        self,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        scheme: SignatureScheme | None = None,
    ) -> None:
        self.certificate = certificate
        self.chain = tuple(chain)
        key_algo = certificate.public_key.algorithm
        if key_algo == "rsa":
            self.scheme = scheme or SignatureScheme.RSA_PKCS1_V15
            if self.scheme is SignatureScheme.ECDSA:
                raise UnsupportedAlgorithm("ECDSA needs an EC key")
        elif key_algo == "ec":
            self.scheme = SignatureScheme.ECDSA
            if scheme not in (None, SignatureScheme.ECDSA):
                raise UnsupportedAlgorithm("an EC key signs with ECDSA only")
        else:
            raise UnsupportedAlgorithm(f"unsupported key algorithm {key_algo!r}")
        self.key_bits: int = certificate.public_key.bit_size

    def signature_size(self) -> int:
        return signature_size(self.certificate, self.scheme)

    def sign(self, digest: bytes, hash_name: str, *, scheme: SignatureScheme | None = None, pss: PssParams | None = None) -> bytes:
        """Check the request, then sign. ECDSA signatures come back as DER."""
        return self.sign_many([digest], hash_name, scheme=scheme, pss=pss)[0]

    def sign_many(self, digests: Sequence[bytes], hash_name: str, *, scheme: SignatureScheme | None = None,
                  pss: PssParams | None = None) -> list[bytes]:
        """:meth:`sign` for several digests of one hash algorithm, in order."""
        if hash_name not in DIGEST_SIZES:
            raise UnsupportedAlgorithm(f"unsupported digest algorithm {hash_name!r}")
        for digest in digests:
            check_digest(digest, hash_name)
        use = scheme or self.scheme
        if use is not self.scheme and {use, self.scheme} != {SignatureScheme.RSA_PKCS1_V15, SignatureScheme.RSA_PSS}:
            raise UnsupportedAlgorithm(f"{use.value} does not fit this {self.scheme.value} key")
        if use is SignatureScheme.RSA_PSS:
            pss = pss or PssParams(hash_name, DIGEST_SIZES[hash_name])
            if pss.hash_name != hash_name:
                raise InvalidParameters("the PSS parameters name another digest than the hash")
            pss.check_for_key(self.key_bits)
        elif pss is not None:
            raise InvalidParameters(f"PSS parameters given for {use.value}")
        return self._sign_digests(digests, hash_name, use, pss)

    def _sign_digests(self, digests: Sequence[bytes], hash_name: str, scheme: SignatureScheme,
                      pss: PssParams | None) -> list[bytes]:
        """Sign checked digests; a key that can sign a batch faster overrides this."""
        return [self._sign_digest(digest, hash_name, scheme, pss) for digest in digests]

    @abstractmethod
    def _sign_digest(self, digest: bytes, hash_name: str, scheme: SignatureScheme, pss: PssParams | None) -> bytes:
        """Sign a checked digest."""
