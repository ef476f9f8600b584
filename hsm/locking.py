"""Re-initialise a PKCS#11 module so that it uses OS locking.

python-pkcs11 calls ``C_Initialize(NULL)``, which makes SoftHSM2 switch its mutexes off:
two threads on two sessions then corrupt memory. We call the same module's
``C_Finalize`` and ``C_Initialize`` with ``CKF_OS_LOCKING_OK`` right after it is loaded,
before any session exists. Never call python-pkcs11's ``reinitialize()`` afterwards.
"""

from __future__ import annotations

import ctypes
import functools

CKF_OS_LOCKING_OK = 0x2
CKR_OK = 0
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191


class _InitializeArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


@functools.cache
def load_module(module_path: str) -> ctypes.CDLL:
    """The already loaded module (dlopen returns the same instance) as a ctypes handle."""
    return ctypes.CDLL(module_path)


def reinitialize_with_os_locking(module: ctypes.CDLL) -> None:
    finalize = module.C_Finalize
    finalize.argtypes = [ctypes.c_void_p]
    finalize.restype = ctypes.c_ulong
    initialize = module.C_Initialize
    initialize.argtypes = [ctypes.c_void_p]
    initialize.restype = ctypes.c_ulong

    finalize(None)
    args = _InitializeArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    rv = initialize(ctypes.byref(args))
    if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
        raise OSError(f"C_Initialize with OS locking failed: CKR 0x{rv:x}")


def init_token(module: ctypes.CDLL, slot_id: int, so_pin: str, label: str) -> None:
    """``C_InitToken``: python-pkcs11 0.9 does not expose it.

    Doing it in process keeps the SO PIN off command lines (softhsm2-util needs a tty).
    """
    fn = module.C_InitToken
    fn.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    fn.restype = ctypes.c_ulong
    pin = so_pin.encode()
    padded_label = label.encode().ljust(32, b" ")[:32]
    rv = fn(slot_id, pin, len(pin), padded_label)
    if rv != CKR_OK:
        raise OSError(f"C_InitToken failed: CKR 0x{rv:x}")


CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3


class _SessionInfo(ctypes.Structure):
    _fields_ = [
        ("slotID", ctypes.c_ulong),
        ("state", ctypes.c_ulong),
        ("flags", ctypes.c_ulong),
        ("ulDeviceError", ctypes.c_ulong),
    ]


def session_state(module: ctypes.CDLL, handle: int) -> int | None:
    """``C_GetSessionInfo``'s state (CKS_*), or None when the call fails.

    python-pkcs11 0.9 does not expose it; it tells whether the process is still logged in.
    """
    fn = module.C_GetSessionInfo
    fn.argtypes = [ctypes.c_ulong, ctypes.POINTER(_SessionInfo)]
    fn.restype = ctypes.c_ulong
    info = _SessionInfo()
    if fn(handle, ctypes.byref(info)) != CKR_OK:
        return None
    return int(info.state)
