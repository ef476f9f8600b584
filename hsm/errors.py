"""The HSM's own small error hierarchy; PKCS#11 exceptions never leave this package."""

from __future__ import annotations


class HsmError(Exception):
    """Root of HSM errors. ``code`` is stable and safe to show to clients."""

    code = "hsm_error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenMissing(HsmError):
    code = "hsm_token_missing"
    status = 503


class WrongPin(HsmError):
    code = "hsm_wrong_pin"
    status = 503


class KeyNotFound(HsmError):
    code = "hsm_key_not_found"


class MechanismUnsupported(HsmError):
    code = "hsm_mechanism_unsupported"


class DeviceError(HsmError):
    """The token failed or went away; the operation may be retried after a reopen."""

    code = "hsm_device_error"
    status = 503
