"""One PKCS#11 token, logged in once per process, with a thread-safe session pool."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import pkcs11
from asn1crypto import keys as asn1_keys
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm import locking
from hsm.errors import DeviceError, HsmError, KeyNotFound, MechanismUnsupported, TokenMissing, WrongPin
from hsm.gate import ModuleGate
from hsm.keys import KeyAlgorithm, KeyInfo, SignatureScheme
from hsm.pool import SessionPool

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


# DER prefixes of DigestInfo (RFC 8017 §9.2, note 1), followed by the digest.
_DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_HASH = {
    "sha256": (Mechanism.SHA256, pkcs11.MGF.SHA256),
    "sha384": (Mechanism.SHA384, pkcs11.MGF.SHA384),
    "sha512": (Mechanism.SHA512, pkcs11.MGF.SHA512),
}
_DIGEST_SIZE = {"sha256": 32, "sha384": 48, "sha512": 64}

_DEVICE_ERRORS = (
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
_LOST_SESSION_ERRORS = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.UserNotLoggedIn,
)

# One PKCS#11 module per process: SoftHSM reads SOFTHSM2_CONF only at its first load.
_loaded_lock = threading.Lock()
_loaded_conf: str | None = None

# Every call into the module holds this gate shared; a re-initialisation holds it alone.
_GATE = ModuleGate()
# Bumped at each re-initialisation: sessions opened before it are gone (and their handles reused).
_module_epoch = 0

# Batches from this many digests on are signed over parallel sessions.
_PARALLEL_FROM = 8

# Retry a lost token after this long at first, doubling up to the maximum.
_RETRY_FIRST = 0.5
_RETRY_MAX = 5.0
_USER_STATES = (locking.CKS_RO_USER_FUNCTIONS, locking.CKS_RW_USER_FUNCTIONS)

log = logging.getLogger(__name__)


def _load_library(module_path: str) -> Any:
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


def _reinitialize_module(module_path: str) -> None:
    """C_Finalize and C_Initialize (OS locking kept); the caller holds ``_GATE`` exclusively.

    SoftHSM scans its token directory only at C_Initialize: a token that went away and came
    back stays invalid until then. Never python-pkcs11's ``reinitialize()`` (trap 1).
    """
    global _module_epoch
    try:
        locking.reinitialize_with_os_locking(locking.load_module(module_path))
    finally:
        _module_epoch += 1


def initialize_token(module_path: str, label: str, so_pin: str, user_pin: str) -> None:
    """Initialise a free slot as token ``label`` and set its user PIN."""
    lib = _load_library(module_path)
    with _GATE.shared():
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

    def __init__(self, module_path: str, token_label: str, user_pin: str, max_sessions: int = 8) -> None:
        self._module_path = module_path
        self._sign_parallel = max(1, min(os.cpu_count() or 1, max_sessions // 2))
        """Sessions one long batch is split over."""
        self._helpers: futures.ThreadPoolExecutor | None = None
        self._helpers_lock = threading.Lock()
        self._token_label = token_label
        self._user_pin = user_pin
        self._pool = SessionPool(max_sessions)
        self._login_session: Any = None
        self._token: Any = None
        self._epoch = _module_epoch
        self._fault: HsmError | None = None
        """Why the token is unusable, until a recovery succeeds."""
        self._fault_lock = threading.Lock()
        self._retry_at = 0.0
        self._retry_delay = _RETRY_FIRST
        lib = _load_library(module_path)
        with _GATE.shared():
            self._connect(lib)

    # -- lifecycle -------------------------------------------------------------------------

    def _connect(self, lib: Any) -> None:
        """Find the token and log in; the caller holds ``_GATE``."""
        self._epoch = _module_epoch
        try:
            self._token = lib.get_token(token_label=self._token_label)
        except (p11.NoSuchToken, p11.MultipleTokensReturned) as exc:
            raise TokenMissing(f"token {self._token_label!r} not found") from exc
        except _DEVICE_ERRORS as exc:
            raise TokenMissing(f"token {self._token_label!r} unavailable: {type(exc).__name__}") from exc
        try:
            # The one login of this process (trap 2 and 3): kept open for the process's life.
            self._login_session = self._token.open(user_pin=self._user_pin, rw=True)
        except p11.UserAlreadyLoggedIn:
            self._login_session = self._token.open(rw=True)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid) as exc:
            raise WrongPin("the HSM refused the user PIN") from exc
        except p11.PinLocked as exc:
            raise WrongPin("the HSM user PIN is locked") from exc
        except _DEVICE_ERRORS as exc:
            raise TokenMissing(f"cannot log in to token {self._token_label!r}: {type(exc).__name__}") from exc

    def close(self) -> None:
        with _GATE.exclusive():
            sessions = self._pool.take_all()
            if self._epoch == _module_epoch:  # else the handles are gone and may name others' sessions
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
        with _GATE.exclusive():
            self._recover()
        if self._fault is not None:
            raise type(self._fault)(self._fault.message)

    def ping(self) -> None:
        """Raise unless the token is present and this process is logged in."""
        self._recover_if_due()
        with _GATE.shared():
            self._raise_if_faulted()
            reason = self._health()
            if reason is not None:
                raise self._set_fault(TokenMissing(reason))

    # -- recovery ----------------------------------------------------------------------------

    def _health(self) -> str | None:
        """None when the token answers and this process is logged in, else why not (holds ``_GATE``)."""
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
        if self._epoch != _module_epoch:
            raise DeviceError("the HSM module was re-initialised; retry")

    def _recover_if_due(self) -> None:
        if self._fault is None and self._epoch == _module_epoch:
            return
        if time.monotonic() < self._retry_at:
            return
        with _GATE.exclusive():
            if self._fault is not None or self._epoch != _module_epoch:
                self._recover()

    def _recover(self) -> None:
        """Drop every session, re-initialise the module, log in again (holds ``_GATE`` alone)."""
        # Forget, never close: after C_Finalize the old handles may name new sessions.
        self._pool.take_all()
        self._login_session = None
        lib = _load_library(self._module_path)
        try:
            if self._epoch == _module_epoch:  # nobody re-initialised the module since we connected
                _reinitialize_module(self._module_path)
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
        with _GATE.shared():
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
        except _DEVICE_ERRORS as exc:
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
        ident = key_id.encode()
        private_template = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.PRIVATE: True,
            Attribute.TOKEN: True,
        }
        public_template = {Attribute.VERIFY: True, Attribute.TOKEN: True}
        with self._session() as session:
            if self._find(session, ObjectClass.PRIVATE_KEY, ident, missing_ok=True) is not None:
                raise HsmError(f"a key with id {key_id!r} already exists")
            try:
                if algorithm.is_rsa:
                    public, _ = session.generate_keypair(
                        KeyType.RSA,
                        algorithm.rsa_bits,
                        id=ident,
                        label=label or key_id,
                        store=True,
                        public_template=public_template,
                        private_template=private_template,
                    )
                else:
                    params = session.create_domain_parameters(
                        KeyType.EC,
                        {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve)},
                        local=True,
                    )
                    public, _ = params.generate_keypair(
                        id=ident,
                        label=label or key_id,
                        store=True,
                        public_template=public_template,
                        private_template=private_template,
                    )
            except (p11.MechanismInvalid, p11.KeySizeRange, p11.DomainParamsInvalid, p11.FunctionNotSupported) as exc:
                raise MechanismUnsupported(f"the token cannot generate {algorithm.value} keys") from exc
            except _DEVICE_ERRORS as exc:
                raise DeviceError(f"key generation failed: {type(exc).__name__}") from exc
            return KeyInfo(key_id, algorithm, _spki(public, algorithm))

    def public_key(self, key_id: str, algorithm: KeyAlgorithm) -> KeyInfo:
        with self._session() as session:
            public = self._find(session, ObjectClass.PUBLIC_KEY, key_id.encode())
            return KeyInfo(key_id, algorithm, _spki(public, algorithm))

    def key_attributes(self, key_id: str) -> dict[str, bool]:
        """Security attributes of the private key, as the token reports them."""
        with self._session() as session:
            private = self._find(session, ObjectClass.PRIVATE_KEY, key_id.encode())
            return {
                "sensitive": bool(private[Attribute.SENSITIVE]),
                "extractable": bool(private[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(private[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(private[Attribute.NEVER_EXTRACTABLE]),
            }

    def read_private_value(self, key_id: str) -> bytes:
        """Try to read the private key's value; a correct token always refuses."""
        with self._session() as session:
            private = self._find(session, ObjectClass.PRIVATE_KEY, key_id.encode())
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
            return self._find(session, ObjectClass.PRIVATE_KEY, key_id.encode(), missing_ok=True) is not None

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
        """Sign several digests with one key, in order. A long batch is split over parallel
        sessions (the module releases the GIL while it signs), each with one key look-up."""
        if hash_name not in _DIGEST_SIZE:
            raise MechanismUnsupported(f"unsupported hash {hash_name!r}")
        for digest in digests:
            if len(digest) != _DIGEST_SIZE[hash_name]:
                raise HsmError(f"a {hash_name} digest has {_DIGEST_SIZE[hash_name]} bytes, got {len(digest)}")
        if not digests:
            return []
        parts = self._sign_parallel if len(digests) >= _PARALLEL_FROM else 1
        size = -(-len(digests) // parts)
        chunks = [digests[i:i + size] for i in range(0, len(digests), size)]
        helpers = [self._signing_pool().submit(self._sign_in_session, key_id, chunk, hash_name, scheme, pss_salt_length)
                   for chunk in chunks[1:]]
        try:
            # Never wait for the helpers while holding a session: they may need one from the pool.
            signatures = self._sign_in_session(key_id, chunks[0], hash_name, scheme, pss_salt_length)
        finally:
            futures.wait(helpers)
        for helper in helpers:
            signatures += helper.result()
        return signatures

    def _sign_in_session(self, key_id: str, digests: Sequence[bytes], hash_name: str, scheme: SignatureScheme,
                         pss_salt_length: int | None) -> list[bytes]:
        with self._session() as session:
            key = self._find(session, ObjectClass.PRIVATE_KEY, key_id.encode())
            try:
                if scheme is SignatureScheme.RSA_PKCS1_V15:
                    prefix = _DIGEST_INFO_PREFIX[hash_name]
                    return [bytes(key.sign(prefix + d, mechanism=Mechanism.RSA_PKCS)) for d in digests]
                if scheme is SignatureScheme.RSA_PSS:
                    hash_mech, mgf = _PSS_HASH[hash_name]
                    salt = _DIGEST_SIZE[hash_name] if pss_salt_length is None else pss_salt_length
                    return [bytes(key.sign(d, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=(hash_mech, mgf, salt)))
                            for d in digests]
                return [bytes(encode_ecdsa_signature(bytes(key.sign(d, mechanism=Mechanism.ECDSA)))) for d in digests]
            except (p11.MechanismInvalid, p11.KeyTypeInconsistent, p11.FunctionNotSupported) as exc:
                raise MechanismUnsupported(f"{scheme.value} is not usable with key {key_id!r}") from exc
            except (p11.MechanismParamInvalid, p11.DataLenRange, p11.DataInvalid) as exc:
                raise HsmError(f"the HSM rejected the {scheme.value} parameters") from exc
            except _DEVICE_ERRORS as exc:
                raise DeviceError(f"signing failed: {type(exc).__name__}") from exc

    def _signing_pool(self) -> futures.ThreadPoolExecutor:
        with self._helpers_lock:
            if self._helpers is None:
                self._helpers = futures.ThreadPoolExecutor(max(1, self._sign_parallel - 1), thread_name_prefix="hsm-sign")
            return self._helpers

    @staticmethod
    def _find(session: Any, cls: ObjectClass, ident: bytes, missing_ok: bool = False) -> Any:
        try:
            return session.get_key(object_class=cls, id=ident)
        except p11.NoSuchKey as exc:
            if missing_ok:
                return None
            raise KeyNotFound(f"no key with id {ident.decode(errors='replace')!r}") from exc
        except p11.MultipleObjectsReturned as exc:
            raise HsmError(f"several keys with id {ident.decode(errors='replace')!r}") from exc


def _spki(public: Any, algorithm: KeyAlgorithm) -> bytes:
    if algorithm.is_rsa:
        rsa_der = encode_rsa_public_key(public)
        info = asn1_keys.PublicKeyInfo(
            {
                "algorithm": {"algorithm": "rsa", "parameters": None},
                "public_key": asn1_keys.RSAPublicKey.load(rsa_der),
            }
        )
        return bytes(info.dump())
    return bytes(encode_ec_public_key(public))

