"""What the fake keeps for one provider: its user, the system's credentials, transactions, the phone, refusals."""

from __future__ import annotations

import base64
import binascii
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.ca_adapters.independent_fake.pki import Pki


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64_digest(value: Any) -> bytes | None:
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == 32 else None


@dataclass
class Transaction:
    id: str
    owner: str
    digests: list[tuple[str, bytes]]
    polls: int = 0
    acknowledged: bool = False

    def signatures(self, pki: Pki) -> list[tuple[str, str]]:
        return [(doc_id, b64(pki.sign(digest))) for doc_id, digest in self.digests]


@dataclass
class FakeState:
    """One provider's API: a user, the system's credentials, its transactions, a log of refusals."""

    provider: str
    user_id: str = "079088001234"
    client_id: str = "fake-client"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(8))
    password: str = "fake-password"
    otp: str = field(default_factory=lambda: f"{secrets.randbelow(10**6):06d}")
    phone: str = "approve"
    """``approve`` or ``reject``: what the signer does once the transaction has been answered PENDING once."""

    def __post_init__(self) -> None:
        self.pki = Pki.make(f"Signer {self.user_id}")
        self.transactions: dict[str, Transaction] = {}
        self.refusals: list[str] = []
        self.tokens: dict[str, str] = {}  # bearer token -> user id
        self.misa_account_id = str(uuid.uuid4())  # MISA's user.id: not the userName one logs in with
        self.misa_alias = str(uuid.uuid4())
        self.viettel_credential = f"{self.user_id}_{self.pki.cert.serial_number % 10_000_000}_20250101000000"
        self.idcts = 4711

    # the phone: one PENDING answer first, then the signer's decision
    def outcome(self, tx: Transaction) -> str:
        tx.polls += 1
        return "pending" if tx.polls == 1 else self.phone

    def refuse(self, why: str) -> str:
        self.refusals.append(why)
        return why

    def new_transaction(self, owner: str, digests: list[tuple[str, bytes]]) -> Transaction:
        tx = Transaction(uuid.uuid4().hex, owner, digests)
        self.transactions[tx.id] = tx
        return tx
