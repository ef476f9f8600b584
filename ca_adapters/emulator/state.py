"""An emulator's state: its CA, the users whose keys it holds, transactions, the simulated phone."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from fastapi import HTTPException

from ca_adapters.base import Subject
from ca_adapters.testpki import IssuingCa

PHONE_MODES = ("approve", "refuse", "timeout")


@dataclass
class ProviderUser:
    """A signer whose key the provider keeps (delegated mode)."""

    user_id: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    password: str = ""


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
            self._users[meta["user_id"]] = ProviderUser(meta["user_id"], key, chain[0], chain[1:], meta["password"])

    def add_user(self, user_id: str, full_name: str, organization: str | None = None) -> ProviderUser:
        """Register a signer at the provider: an RSA-2048 key kept here and its certificate."""
        with self._lock:
            if user_id in self._users:
                return self._users[user_id]
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            issued = self.ca.issue(software_csr(key, full_name), Subject(full_name, user_id, organization),
                                   "rsa-2048", test_mode=False)
            chain = [x509.load_der_x509_certificate(d) for d in (issued.certificate_der, *issued.chain_der)]
            user = ProviderUser(user_id, key, chain[0], chain[1:], secrets.token_urlsafe(12))
            self._users_dir.mkdir(mode=0o700, exist_ok=True)
            key_path = self._users_dir / f"{user_id}.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            (self._users_dir / f"{user_id}.json").write_text(json.dumps({
                "user_id": user_id, "password": user.password,
                "chain": [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain]}))
            self._users[user_id] = user
            return user

    def user(self, user_id: str) -> ProviderUser | None:
        return self._users.get(user_id)

    def user_ids(self) -> list[str]:
        return list(self._users)

    # -- transactions ------------------------------------------------------------------------------------------

    def start(self, user_id: str, digests: list[tuple[str, bytes]], transaction_id: str | None = None) -> Transaction:
        with self._lock:
            tid = transaction_id or secrets.token_hex(12)
            if tid in self._transactions:
                raise HTTPException(409, "transaction id already used")
            tx = Transaction(tid, user_id, digests)
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
                tx.signatures = [user.key.sign(d, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())) for _, d in tx.digests]
                tx.outcome = "approved"
            return tx

    def expired(self, tx: Transaction) -> bool:
        return tx.outcome is None and time.monotonic() - tx.created > self.ttl_seconds

    def cancel(self, transaction_id: str) -> bool:
        with self._lock:
            tx = self._transactions.get(transaction_id)
            if tx is None:
                return False
            tx.cancelled = True
            return True


def software_csr(key: rsa.RSAPrivateKey, name: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
