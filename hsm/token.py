"""One PKCS#11 token, logged in once per process, with a thread-safe session pool."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import Any

from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from hsm import locking
from hsm.errors import DeviceError, HsmError, KeyNotFound, MechanismUnsupported, TokenMissing, WrongPin
from hsm.idle_cores import IdleCores
from hsm.keys import KeyAlgorithm, KeyInfo, SignatureScheme
from hsm.library import DEVICE_ERRORS, GATE, load_library, module_epoch, reinitialize_module
from hsm.mechanisms import DIGEST_SIZE, find_key, generate_keypair, sign_with_key, spki
from hsm.pool import SessionPool

_LOST_SESSION_ERRORS = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.UserNotLoggedIn,
)

# Batches from this many digests on are signed over parallel sessions, when some are idle.
_PARALLEL_FROM = 8
# A core counts as idle from 80 % idle on.
_IDLE_SLACK = 0.2


def split_parts(count: int, parallel: int, busy: int, idle_cores: float) -> int:
    """Over how many sessions to sign ``count`` digests while ``busy`` sessions already sign and
    ``idle_cores`` cores sat idle a moment ago: a long batch takes the idle cores, none when other
    work keeps them busy (splitting then only adds hand-offs and key look-ups, so each signature
    costs more CPU and the other requests wait)."""
    if count < _PARALLEL_FROM:
        return 1
    return max(1, min(parallel - busy, 1 + int(idle_cores + _IDLE_SLACK)))


# Retry a lost token after this long at first, doubling up to the maximum.
_RETRY_FIRST = 0.5
_RETRY_MAX = 5.0
_USER_STATES = (locking.CKS_RO_USER_FUNCTIONS, locking.CKS_RW_USER_FUNCTIONS)

log = logging.getLogger(__name__)


def _close_quietly(session: Any) -> None:
    try:
        session.close()
    except p11.PKCS11Error:
        pass


class Hsm:
    """A logged-in token. Thread-safe; open one per process and share it.

    When the token goes away (removed, device error, login lost), calls fail with
    :class:`TokenMissing` and the next call after a short back-off re-initialises the module
    behind the drained pool and logs in again, so that the process recovers without a restart.
    """

    def __init__(self, module_path: str, token_label: str, user_pin: str, max_sessions: int = 8,
                 idle_cores: Callable[[], float] | None = None) -> None:
        self._module_path = module_path
        self._idle_cores = idle_cores or IdleCores()
        """Cores idle a moment ago: a long batch is split only over those."""
        self._sign_parallel = max(1, min(os.cpu_count() or 1, max_sessions // 2))
        """Sessions one long batch is split over, when nothing else is signing."""
        self._signing = 0
        """Sessions signing right now (guarded by ``_helpers_lock``)."""
        self._helpers: futures.ThreadPoolExecutor | None = None
        self._helpers_lock = threading.Lock()
        self._token_label = token_label
        self._user_pin = user_pin
        self._pool = SessionPool(max_sessions)
        self._login_session: Any = None
        self._token: Any = None
        self._epoch = module_epoch()
        self._fault: HsmError | None = None
        """Why the token is unusable, until a recovery succeeds."""
        self._fault_lock = threading.Lock()
        self._retry_at = 0.0
        self._retry_delay = _RETRY_FIRST
        lib = load_library(module_path)
        with GATE.shared():
            self._connect(lib)

    # -- lifecycle -------------------------------------------------------------------------

    def _connect(self, lib: Any) -> None:
        """Find the token and log in; the caller holds ``GATE``."""
        self._epoch = module_epoch()
        try:
            self._token = lib.get_token(token_label=self._token_label)
        except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
            raise TokenMissing(f"token {self._token_label!r} not found") from exc
        except DEVICE_ERRORS as exc:
            raise TokenMissing(f"token {self._token_label!r} unavailable: {type(exc).__name__}") from exc
        try:
            # The one login of this process (login is per process, and SoftHSM rewrites its token file
            # at each): kept open for the process's life.
            self._login_session = self._token.open(user_pin=self._user_pin, rw=True)
        except p11.UserAlreadyLoggedIn:
            self._login_session = self._token.open(rw=True)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid) as exc:
            raise WrongPin("the HSM refused the user PIN") from exc
        except p11.PinLocked as exc:
            raise WrongPin("the HSM user PIN is locked") from exc
        except DEVICE_ERRORS as exc:
            raise TokenMissing(f"cannot log in to token {self._token_label!r}: {type(exc).__name__}") from exc

    def close(self) -> None:
        with GATE.exclusive():
            sessions = self._pool.take_all()
            if self._epoch == module_epoch():  # else the handles are gone and may name others' sessions
                for session in sessions:
                    _close_quietly(session)
                if self._login_session is not None:
                    _close_quietly(self._login_session)
            self._login_session = None
            self._fault = TokenMissing("the HSM connection is closed")
            self._retry_at = float("inf")
        if self._helpers is not None:
            self._helpers.shutdown(wait=False)

    def reconnect(self) -> None:
        """Re-initialise the module and log in again now (after the token went away and came back)."""
        with GATE.exclusive():
            self._recover()
        if self._fault is not None:
            raise type(self._fault)(self._fault.message)

    def ping(self) -> None:
        """Raise unless the token is present and this process is logged in."""
        self._recover_if_due()
        with GATE.shared():
            self._raise_if_faulted()
            reason = self._health()
            if reason is not None:
                raise self._set_fault(TokenMissing(reason))

    # -- recovery ----------------------------------------------------------------------------

    def _health(self) -> str | None:
        """None when the token answers and this process is logged in, else why not (holds ``GATE``)."""
        try:
            info = self._token.slot.get_token()  # C_GetTokenInfo fails once SoftHSM lost the token
        except p11.PKCS11Error as exc:
            return f"token {self._token_label!r} unavailable: {type(exc).__name__}"
        if info.label != self._token_label:
            return f"token {self._token_label!r} was replaced"
        state = locking.session_state(locking.load_module(self._module_path), self._login_session.handle)
        if state not in _USER_STATES:
            return f"not logged in to token {self._token_label!r}"
        return None

    def _set_fault(self, fault: HsmError) -> HsmError:
        with self._fault_lock:
            if self._fault is None:
                log.error("HSM token lost: %s", fault.message, extra={"hsm_code": fault.code})
                self._retry_at = time.monotonic()
                self._retry_delay = _RETRY_FIRST
                self._fault = fault
        return type(fault)(fault.message)

    def _raise_if_faulted(self) -> None:
        if self._fault is not None:
            raise type(self._fault)(self._fault.message)
        if self._epoch != module_epoch():
            raise DeviceError("the HSM module was re-initialised; retry")

    def _recover_if_due(self) -> None:
        if self._fault is None and self._epoch == module_epoch():
            return
        if time.monotonic() < self._retry_at:
            return
        with GATE.exclusive():
            if self._fault is not None or self._epoch != module_epoch():
                self._recover()

    def _recover(self) -> None:
        """Drop every session, re-initialise the module, log in again (holds ``GATE`` alone)."""
        # Forget, never close: after C_Finalize the old handles may name new sessions.
        self._pool.take_all()
        self._login_session = None
        lib = load_library(self._module_path)
        try:
            if self._epoch == module_epoch():  # nobody re-initialised the module since we connected
                reinitialize_module(self._module_path)
            self._connect(lib)
        except (HsmError, OSError) as exc:
            fault = exc if isinstance(exc, HsmError) else DeviceError(f"re-initialisation failed: {exc}")
            self._fault = fault
            # A refused PIN is not retried: each try could count towards locking it.
            delay = float("inf") if isinstance(fault, WrongPin) else self._retry_delay
            self._retry_at = time.monotonic() + delay
            self._retry_delay = min(self._retry_delay * 2, _RETRY_MAX)
            log.warning("HSM recovery failed: %s", fault.message, extra={"hsm_code": fault.code})
            return
        self._fault = None
        self._retry_delay = _RETRY_FIRST
        log.warning("HSM token recovered: module re-initialised, logged in again")

    # -- sessions ----------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Any]:
        self._recover_if_due()
        with GATE.shared():
            self._raise_if_faulted()
            session = None
            try:
                session = self._pool.checkout(self._open_session)
                yield session
            except Exception as exc:
                if session is not None:
                    self._pool.discard(session, _close_quietly)
                mapped = self._diagnose(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            else:
                self._pool.checkin(session)

    def _open_session(self) -> Any:
        try:
            return self._token.open(rw=True)
        except DEVICE_ERRORS as exc:
            raise DeviceError(f"cannot open an HSM session: {type(exc).__name__}") from exc

    def _diagnose(self, exc: Exception) -> Exception:
        """A failure that may mean the token went away: check, and if so fail as TokenMissing."""
        if isinstance(exc, (DeviceError, KeyNotFound, TokenMissing, p11.PKCS11Error)):
            reason = self._health()
            if reason is not None:
                return self._set_fault(TokenMissing(reason))
        if isinstance(exc, p11.PKCS11Error):
            lost = isinstance(exc, _LOST_SESSION_ERRORS)
            return DeviceError(f"HSM {'session lost' if lost else 'call failed'}: {type(exc).__name__}")
        return exc

    # -- keys ---------------------------------------------------------------------------------

    def generate_key(self, key_id: str, algorithm: KeyAlgorithm, label: str | None = None) -> KeyInfo:
        """A key pair whose private half is sensitive and never extractable."""
        with self._session() as session:
            if find_key(session, ObjectClass.PRIVATE_KEY, key_id.encode(), missing_ok=True) is not None:
                raise HsmError(f"a key with id {key_id!r} already exists")
            public = generate_keypair(session, key_id, algorithm, label)
            return KeyInfo(key_id, algorithm, spki(public, algorithm))

    def public_key(self, key_id: str, algorithm: KeyAlgorithm) -> KeyInfo:
        with self._session() as session:
            public = find_key(session, ObjectClass.PUBLIC_KEY, key_id.encode())
            return KeyInfo(key_id, algorithm, spki(public, algorithm))

    def key_attributes(self, key_id: str) -> dict[str, bool]:
        """Security attributes of the private key, as the token reports them."""
        with self._session() as session:
            private = find_key(session, ObjectClass.PRIVATE_KEY, key_id.encode())
            return {
                "sensitive": bool(private[Attribute.SENSITIVE]),
                "extractable": bool(private[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(private[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(private[Attribute.NEVER_EXTRACTABLE]),
            }

    def read_private_value(self, key_id: str) -> bytes:
        """Try to read the private key's value; a correct token always refuses."""
        with self._session() as session:
            private = find_key(session, ObjectClass.PRIVATE_KEY, key_id.encode())
            attr = Attribute.PRIVATE_EXPONENT if private.key_type == KeyType.RSA else Attribute.VALUE
            try:
                return bytes(private[attr])
            except (p11.AttributeSensitive, p11.AttributeTypeInvalid) as exc:
                raise HsmError(f"private key value not readable: {type(exc).__name__}") from exc

    def delete_key(self, key_id: str) -> None:
        ident = key_id.encode()
        with self._session() as session:
            found = False
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in session.get_objects({Attribute.CLASS: cls, Attribute.ID: ident}):
                    obj.destroy()
                    found = True
            if not found:
                raise KeyNotFound(f"no key with id {key_id!r}")

    def key_exists(self, key_id: str) -> bool:
        with self._session() as session:
            return find_key(session, ObjectClass.PRIVATE_KEY, key_id.encode(), missing_ok=True) is not None

    # -- signing ------------------------------------------------------------------------------

    def sign_digest(
        self,
        key_id: str,
        digest: bytes,
        hash_name: str,
        scheme: SignatureScheme,
        *,
        pss_salt_length: int | None = None,
    ) -> bytes:
        """Sign a digest computed by the caller; ECDSA comes back as DER ``ECDSA-Sig-Value``."""
        return self.sign_digests(key_id, [digest], hash_name, scheme, pss_salt_length=pss_salt_length)[0]

    def sign_digests(
        self,
        key_id: str,
        digests: Sequence[bytes],
        hash_name: str,
        scheme: SignatureScheme,
        *,
        pss_salt_length: int | None = None,
    ) -> list[bytes]:
        """Sign several digests with one key, in order. A long batch is split over the parallel
        sessions no other batch is using while cores are idle (the module releases the GIL while it
        signs), each with one key look-up; under load it signs in the caller's thread."""
        if hash_name not in DIGEST_SIZE:
            raise MechanismUnsupported(f"unsupported hash {hash_name!r}")
        for digest in digests:
            if len(digest) != DIGEST_SIZE[hash_name]:
                raise HsmError(f"a {hash_name} digest has {DIGEST_SIZE[hash_name]} bytes, got {len(digest)}")
        if not digests:
            return []
        idle = self._idle_cores() if len(digests) >= _PARALLEL_FROM and self._sign_parallel > 1 else 0.0
        with self._helpers_lock:
            parts = split_parts(len(digests), self._sign_parallel, self._signing, idle)
            self._signing += parts
        try:
            size = -(-len(digests) // parts)
            chunks = [digests[i:i + size] for i in range(0, len(digests), size)]
            helpers = [self._signing_pool().submit(self._sign_in_session, key_id, chunk, hash_name, scheme,
                                                   pss_salt_length) for chunk in chunks[1:]]
            try:
                # Never wait for the helpers while holding a session: they may need one from the pool.
                signatures = self._sign_in_session(key_id, chunks[0], hash_name, scheme, pss_salt_length)
            finally:
                futures.wait(helpers)
        finally:
            with self._helpers_lock:
                self._signing -= parts
        for helper in helpers:
            signatures += helper.result()
        return signatures

    def _sign_in_session(self, key_id: str, digests: Sequence[bytes], hash_name: str, scheme: SignatureScheme,
                         pss_salt_length: int | None) -> list[bytes]:
        with self._session() as session:
            key = find_key(session, ObjectClass.PRIVATE_KEY, key_id.encode())
            return sign_with_key(key, key_id, digests, hash_name, scheme, pss_salt_length)

    def _signing_pool(self) -> futures.ThreadPoolExecutor:
        with self._helpers_lock:
            if self._helpers is None:
                self._helpers = futures.ThreadPoolExecutor(max(1, self._sign_parallel - 1), thread_name_prefix="hsm-sign")
            return self._helpers
