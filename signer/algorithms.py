"""Digest and signature algorithms: names, OIDs and the checks made before the HSM sees them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos

from hsm.keys import SignatureScheme
from signer.errors import InvalidHash, InvalidParameters, UnsupportedAlgorithm

DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
DIGEST_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
DIGEST_OID_BY_NAME = {v: k for k, v in DIGEST_OIDS.items()}


# The signature algorithm OIDs a client may name, with the digest they imply (None: any).
SIGNATURE_OIDS: dict[str, tuple[SignatureScheme, str | None]] = {
    "1.2.840.113549.1.1.1": (SignatureScheme.RSA_PKCS1_V15, None),
    "1.2.840.113549.1.1.11": (SignatureScheme.RSA_PKCS1_V15, "sha256"),
    "1.2.840.113549.1.1.12": (SignatureScheme.RSA_PKCS1_V15, "sha384"),
    "1.2.840.113549.1.1.13": (SignatureScheme.RSA_PKCS1_V15, "sha512"),
    "1.2.840.113549.1.1.10": (SignatureScheme.RSA_PSS, None),
    "1.2.840.10045.2.1": (SignatureScheme.ECDSA, None),
    "1.2.840.10045.4.3.2": (SignatureScheme.ECDSA, "sha256"),
    "1.2.840.10045.4.3.3": (SignatureScheme.ECDSA, "sha384"),
    "1.2.840.10045.4.3.4": (SignatureScheme.ECDSA, "sha512"),
}


def digest_name(name_or_oid: str) -> str:
    """Normalise ``sha256`` / ``SHA-256`` / an OID to a digest name."""
    value = name_or_oid.strip()
    if value in DIGEST_OIDS:
        return DIGEST_OIDS[value]
    lowered = value.lower().replace("-", "")
    if lowered in DIGEST_SIZES:
        return lowered
    raise UnsupportedAlgorithm(f"unsupported digest algorithm {name_or_oid!r}")


def check_digest(digest: bytes, hash_name: str) -> None:
    expected = DIGEST_SIZES.get(hash_name)
    if expected is None:
        raise UnsupportedAlgorithm(f"unsupported digest algorithm {hash_name!r}")
    if len(digest) != expected:
        raise InvalidHash(f"a {hash_name} digest has {expected} bytes, got {len(digest)}")


def file_digest(path: Path, hash_name: str = "sha256") -> bytes:
    """Digest of a file read in chunks (large PDFs are never loaded whole)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, hash_name).digest()


def hash_bytes(data: bytes, hash_name: str) -> bytes:
    return hashlib.new(hash_name, data).digest()


@dataclass(frozen=True)
class PssParams:
    hash_name: str
    salt_length: int

    def to_asn1(self) -> algos.RSASSAPSSParams:
        return algos.RSASSAPSSParams(
            {
                "hash_algorithm": {"algorithm": self.hash_name},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": self.hash_name},
                },
                "salt_length": self.salt_length,
            }
        )

    @classmethod
    def from_der(cls, der: bytes) -> PssParams:
        try:
            params = algos.RSASSAPSSParams.load(der)
            hash_name = params["hash_algorithm"]["algorithm"].native
            mgf = params["mask_gen_algorithm"]
            mgf_hash = mgf["parameters"]["algorithm"].native
            salt = int(params["salt_length"].native)
            if mgf["algorithm"].native != "mgf1":
                raise InvalidParameters("only MGF1 is supported for RSA-PSS")
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidParameters(f"malformed RSASSA-PSS parameters: {exc}") from exc
        if mgf_hash != hash_name:
            raise InvalidParameters("RSA-PSS with an MGF1 digest other than the message digest is not supported")
        return cls(digest_name(hash_name), salt)

    def check_for_key(self, modulus_bits: int) -> None:
        """Reject a salt the key cannot hold before the HSM sees it (it would fail obscurely)."""
        em_len = (modulus_bits - 1 + 7) // 8
        max_salt = em_len - DIGEST_SIZES[self.hash_name] - 2
        if not 0 <= self.salt_length <= max_salt:
            raise InvalidParameters(
                f"PSS salt length {self.salt_length} out of range 0..{max_salt} for a {modulus_bits}-bit key"
            )


def signature_algorithm(scheme: SignatureScheme, hash_name: str, pss: PssParams | None = None) -> algos.SignedDigestAlgorithm:
    if scheme is SignatureScheme.RSA_PKCS1_V15:
        return algos.SignedDigestAlgorithm({"algorithm": f"{hash_name}_rsa"})
    if scheme is SignatureScheme.ECDSA:
        return algos.SignedDigestAlgorithm({"algorithm": f"{hash_name}_ecdsa"})
    params = pss or PssParams(hash_name, DIGEST_SIZES[hash_name])
    return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss", "parameters": params.to_asn1()})
