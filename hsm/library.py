"""The process's one PKCS#11 module: load with OS locking, re-initialisation, token initialisation."""

from __future__ import annotations

import os
import threading
from typing import Any

import pkcs11
from pkcs11 import exceptions as p11

from hsm import locking
from hsm.errors import DeviceError, HsmError, TokenMissing
from hsm.gate import ModuleGate

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

DEVICE_ERRORS = (
    p11.DeviceError,
    p11.DeviceRemoved,
    p11.DeviceMemory,
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.GeneralError,
    p11.FunctionFailed,
)

# One PKCS#11 module per process: SoftHSM reads SOFTHSM2_CONF only at its first load.
_loaded_lock = threading.Lock()
_loaded_conf: str | None = None

# Every call into the module holds this gate shared; a re-initialisation holds it alone.
GATE = ModuleGate()
# Bumped at each re-initialisation: sessions opened before it are gone (and their handles reused).
_module_epoch = 0


def module_epoch() -> int:
    """The current epoch; read it through here, a copied integer would not follow the bumps."""
    return _module_epoch


def load_library(module_path: str) -> Any:
    global _loaded_conf
    with _loaded_lock:
        conf = os.environ.get("SOFTHSM2_CONF", "")
        if _loaded_conf is not None and _loaded_conf != conf:
            raise TokenMissing("this process already serves another token store (one data dir per process)")
        try:
            lib = pkcs11.lib(module_path)
        except (p11.PKCS11Error, RuntimeError, OSError) as exc:
            raise TokenMissing(f"cannot load PKCS#11 module {module_path}: {exc}") from exc
        if _loaded_conf is None:
            locking.reinitialize_with_os_locking(locking.load_module(module_path))
            _loaded_conf = conf
        return lib


def reinitialize_module(module_path: str) -> None:
    """C_Finalize and C_Initialize (OS locking kept); the caller holds ``GATE`` exclusively.

    SoftHSM scans its token directory only at C_Initialize: a token that went away and came
    back stays invalid until then. Never python-pkcs11's ``reinitialize()``: it calls
    ``C_Initialize(NULL)`` again, which turns SoftHSM's locking off.
    """
    global _module_epoch
    try:
        locking.reinitialize_with_os_locking(locking.load_module(module_path))
    finally:
        _module_epoch += 1


def initialize_token(module_path: str, label: str, so_pin: str, user_pin: str) -> None:
    """Initialise a free slot as token ``label`` and set its user PIN."""
    lib = load_library(module_path)
    with GATE.shared():
        if any(t.label == label for t in lib.get_tokens()):
            raise HsmError(f"token {label!r} already exists")
        free = [s for s in lib.get_slots() if not (s.get_token().flags & pkcs11.TokenFlag.TOKEN_INITIALIZED)]
        if not free:
            raise TokenMissing("no free slot to initialise a token in")
        try:
            locking.init_token(locking.load_module(module_path), free[0].slot_id, so_pin, label)
            token = lib.get_token(token_label=label)
            with token.open(rw=True, so_pin=so_pin) as session:
                session.init_pin(user_pin)
        except (p11.PKCS11Error, OSError) as exc:
            raise DeviceError(f"token initialisation failed: {type(exc).__name__}") from exc
