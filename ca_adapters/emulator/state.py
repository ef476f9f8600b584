"""An emulator's state: its CA, the users whose keys it holds, transactions, the simulated phone."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.x509.oid import NameOID
from fastapi import HTTPException

from ca_adapters.base import Subject
from ca_adapters.testpki import IssuingCa

PHONE_MODES = ("approve", "refuse", "timeout")
log = logging.getLogger("kyso.emulator")


@dataclass
class Seal:
    """An organisation's seal certificate the provider also lists for the user (VNPT ``ESEAL``)."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate


@dataclass
class ProviderUser:
    """A signer whose key the provider keeps (delegated mode)."""

    user_id: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    password: str = ""
    seal: Seal | None = None

    @property
    def idcts(self) -> int:
        """Nacencomm's integer certificate id (modelled: derived from the serial)."""
        return self.certificate.serial_number % 1_000_000_007


@dataclass
class CallbackTarget:
    """Where the provider calls the integrator back, as registered with it (out of band)."""

    url: str
    token_url: str | None = None
    """Viettel: the integrator's client-credentials endpoint it first obtains a token from."""
    client_id: str = ""
    client_secret: str = ""


@dataclass
class Transaction:
    """One remote-signing request at the provider, waiting for its user's phone."""

    id: str
    user_id: str
    digests: list[tuple[str, bytes]]
    """(document id, SHA-256 digest) in the caller's order."""
    created: float = field(default_factory=time.monotonic)
    outcome: str | None = None
    """None while pending, then "approved" or "refused"."""
    signatures: list[bytes] = field(default_factory=list)
    cancelled: bool = False
    serial: int | None = None
    """The certificate whose key signs (a seal's or the person's); None: the person's."""
    callback: bool = False
    """Call the registered target back once the transaction ends."""
    notified: bool = False
    acknowledged: bool = False
    title: str = ""


class EmulatorState:
    """Shared by the emulator's routes; thread-safe (uvicorn runs sync routes in threads)."""

    def __init__(self, ca: IssuingCa, *, ttl_seconds: float = 300.0, approve_after: float = 0.2) -> None:
        self.ca = ca
        self.ttl_seconds = ttl_seconds
        self.approve_after = approve_after
        self.phone_mode = "approve"
        self.outages: set[str] = set()
        self._lock = threading.Lock()
        self._transactions: dict[str, Transaction] = {}
        self._users: dict[str, ProviderUser] = {}
        self.token_ttl_seconds = 3600.0
        """Session tokens' lifetime (both Viettel's and MISA's publish 60 minutes)."""
        self.revoked_sessions: set[str] = set()
        """Users whose sessions the provider has revoked (their refresh fails)."""
        self.callback: CallbackTarget | None = None
        self.auto_sign_users: set[str] = set()
        self.reply_mode = "normal"
        """``html``: the API answers an error page; ``slow``: it answers after ``slow_seconds``."""
        self.slow_seconds = 2.0
        """Users whose certificate the provider flags as signing without confirmation (MISA ``isAutoSign``)."""
        self.calls: dict[str, int] = {}
        """Calls per API operation name: lets a test show what was (never) called."""
        self.callback_log: list[tuple[str, int]] = []
        self._sender: Callable[[EmulatorState, Transaction, CallbackTarget], int] | None = None
        self._load_users()

    # -- control (tests, `kyso ca emulate`) -------------------------------------------------------------

    def check_up(self, service: str) -> None:
        if service in self.outages:
            raise HTTPException(503, f"{service} is down (emulated outage)")

    def set_phone(self, mode: str) -> None:
        if mode not in PHONE_MODES:
            raise HTTPException(400, f"phone mode is one of {', '.join(PHONE_MODES)}")
        self.phone_mode = mode

    # -- users whose keys stay at the provider -------------------------------------------------------------

    @property
    def _users_dir(self) -> Path:
        return self.ca.directory / "delegated"

    def _load_users(self) -> None:
        if not self._users_dir.exists():
            return
        for meta_path in self._users_dir.glob("*.json"):
            meta = json.loads(meta_path.read_text())
            key = serialization.load_pem_private_key(meta_path.with_suffix(".key").read_bytes(), None)
            assert isinstance(key, rsa.RSAPrivateKey)
            chain = [x509.load_pem_x509_certificate(c.encode()) for c in meta["chain"]]
            seal = None
            if meta.get("seal"):
                seal_key = serialization.load_pem_private_key(meta_path.with_suffix(".seal").read_bytes(), None)
                assert isinstance(seal_key, rsa.RSAPrivateKey)
                seal = Seal(seal_key, x509.load_pem_x509_certificate(meta["seal"].encode()))
            self._users[meta["user_id"]] = ProviderUser(meta["user_id"], key, chain[0], chain[1:], meta["password"],
                                                        seal)

    def add_user(self, user_id: str, full_name: str, organization: str | None = None, *,
                 seal: bool = False) -> ProviderUser:
        """Register a signer at the provider: an RSA-2048 key kept here and its certificate.

        ``seal``: the provider also holds the organisation's seal and lists it first for this user.
        """
        with self._lock:
            if user_id in self._users:
                return self._users[user_id]
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            issued = self.ca.issue(software_csr(key, full_name), Subject(full_name, user_id, organization),
                                   "rsa-2048", test_mode=False)
            chain = [x509.load_der_x509_certificate(d) for d in (issued.certificate_der, *issued.chain_der)]
            user = ProviderUser(user_id, key, chain[0], chain[1:], secrets.token_urlsafe(12))
            self._users_dir.mkdir(mode=0o700, exist_ok=True)
            meta = {"user_id": user_id, "password": user.password,
                    "chain": [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]}
            if seal:
                name = organization or f"{full_name} (seal)"
                seal_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                seal_der = self.ca.issue(software_csr(seal_key, name), Subject(name, user_id, name), "rsa-2048",
                                         test_mode=False).certificate_der
                user.seal = Seal(seal_key, x509.load_der_x509_certificate(seal_der))
                _write_key(self._users_dir / f"{user_id}.seal", seal_key)
                meta["seal"] = user.seal.certificate.public_bytes(serialization.Encoding.PEM).decode()
            _write_key(self._users_dir / f"{user_id}.key", key)
            (self._users_dir / f"{user_id}.json").write_text(json.dumps(meta))
            self._users[user_id] = user
            return user

    def user(self, user_id: str) -> ProviderUser | None:
        return self._users.get(user_id)

    def user_ids(self) -> list[str]:
        return list(self._users)

    # -- transactions ------------------------------------------------------------------------------------------

    def count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1

    def start(self, user_id: str, digests: list[tuple[str, bytes]], transaction_id: str | None = None, *,
              serial: int | None = None, callback: bool = False, title: str = "") -> Transaction:
        with self._lock:
            tid = transaction_id or secrets.token_hex(12)
            if tid in self._transactions:
                raise HTTPException(409, "transaction id already used")
            tx = Transaction(tid, user_id, digests, serial=serial, callback=callback and self.callback is not None,
                             title=title)
            self._transactions[tid] = tx
            return tx

    def get(self, transaction_id: str) -> Transaction | None:
        """The transaction as the phone has left it by now (approval after a short delay)."""
        with self._lock:
            tx = self._transactions.get(transaction_id)
            if tx is None or tx.outcome is not None or tx.cancelled:
                return tx
            age = time.monotonic() - tx.created
            if self.phone_mode == "refuse" and age >= self.approve_after:
                tx.outcome = "refused"
            elif self.phone_mode == "approve" and age >= self.approve_after:
                user = self._users[tx.user_id]
                key = user.seal.key if user.seal and tx.serial == user.seal.certificate.serial_number else user.key
                tx.signatures = [key.sign(d, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())) for _, d in tx.digests]
                tx.outcome = "approved"
            return tx

    # -- calls back (VNPT, Viettel async 3, MISA) -------------------------------------------------------------

    def set_callback(self, target: CallbackTarget | None,
                     sender: Callable[[EmulatorState, Transaction, CallbackTarget], int] | None = None) -> None:
        """Register where to call back; ``sender`` delivers one ended transaction (the provider's shape)."""
        self.callback = target
        if sender is not None:
            self._sender = sender
        if target is not None and not getattr(self, "_notifier", None):
            self._notifier = threading.Thread(target=self._notify_loop, name="emulator-callbacks", daemon=True)
            self._notifier.start()

    def _notify_loop(self) -> None:
        while True:
            time.sleep(0.05)
            target, sender = self.callback, self._sender
            if target is None or sender is None:
                continue
            with self._lock:
                waiting = [t.id for t in self._transactions.values() if t.callback and not t.notified]
            for tid in waiting:
                tx = self.get(tid)
                if tx is None or (tx.outcome is None and not self.expired(tx)):
                    continue
                tx.notified = True
                try:
                    self.callback_log.append((tid, sender(self, tx, target)))
                except Exception as exc:  # noqa: BLE001 - the integrator is away: the provider gives up (modelled)
                    log.warning("callback for %s failed: %s", tid, type(exc).__name__)
                    self.callback_log.append((tid, 0))

    def expired(self, tx: Transaction) -> bool:
        return tx.outcome is None and time.monotonic() - tx.created > self.ttl_seconds

    def cancel(self, transaction_id: str) -> bool:
        with self._lock:
            tx = self._transactions.get(transaction_id)
            if tx is None:
                return False
            tx.cancelled = True
            return True


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def software_csr(key: rsa.RSAPrivateKey, name: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
