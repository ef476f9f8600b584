"""Key algorithms and what the HSM tells about a key."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class KeyAlgorithm(str, enum.Enum):
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"

    @property
    def is_rsa(self) -> bool:
        return self.value.startswith("rsa-")

    @property
    def rsa_bits(self) -> int:
        return int(self.value.split("-")[1])

    @property
    def curve(self) -> str:
        return {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}[self.value]

    @property
    def signature_size(self) -> int:
        """Upper bound of a signature's size in bytes (ECDSA as DER)."""
        if self.is_rsa:
            return self.rsa_bits // 8
        return {"ec-p256": 72, "ec-p384": 104}[self.value]


class SignatureScheme(str, enum.Enum):
    """How a digest is signed: the PKCS#11 mechanism family, shared by the HSM and the formats."""

    RSA_PKCS1_V15 = "rsa-pkcs1v15"
    RSA_PSS = "rsa-pss"
    ECDSA = "ecdsa"


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    algorithm: KeyAlgorithm
    public_key_der: bytes
    """SubjectPublicKeyInfo, DER."""
