"""PKCS#11 access: the only package that imports ``pkcs11``.

It knows tokens, sessions, keys and mechanisms; nothing of users or signature formats.
"""

from hsm.errors import (
    DeviceError,
    HsmError,
    KeyNotFound,
    MechanismUnsupported,
    TokenMissing,
    WrongPin,
)
from hsm.keys import KeyAlgorithm, KeyInfo, SignatureScheme
from hsm.token import Hsm

__all__ = [
    "DeviceError",
    "Hsm",
    "HsmError",
    "KeyAlgorithm",
    "KeyInfo",
    "KeyNotFound",
    "MechanismUnsupported",
    "SignatureScheme",
    "TokenMissing",
    "WrongPin",
]
