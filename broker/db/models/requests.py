"""Signing requests and their hashes, the documents they sign, provider callbacks about them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db.models.base import Base, enum_column, utcnow
from broker.db.models.core import Credential, User


class RequestState(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    SIGNED = "signed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({RequestState.SIGNED, RequestState.REJECTED, RequestState.EXPIRED, RequestState.FAILED,
                          RequestState.CANCELLED})


class ItemState(str, enum.Enum):
    """An authorised hash moves authorised → reserved → consumed, each in a conditional update."""

    PENDING = "pending"
    AUTHORISED = "authorised"
    RESERVED = "reserved"
    CONSUMED = "consumed"
    VOID = "void"


class SigningRequest(Base):
    """What a relying system asks a signer to approve: hashes bound to one credential."""

    __tablename__ = "signing_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    relying_system: Mapped[str] = mapped_column(String(64))
    state: Mapped[RequestState] = mapped_column(enum_column(RequestState, "request_state"))
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str] = mapped_column(String(64))
    binding: Mapped[bytes] = mapped_column(LargeBinary(32))
    verification_code: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decided_via: Mapped[str | None] = mapped_column(String(128), nullable=True)
    evidence: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    unconfirmed: Mapped[bool] = mapped_column(default=False)
    """Signed without the signer's confirmation (``kyso sign --unconfirmed`` in a sandbox)."""
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sad_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """SHA-256 of the CSC Signature Activation Data: drawn with the request, handed out once the
    signer approved, valid ``sad_seconds`` from ``decided_at``."""
    format: Mapped[str] = mapped_column(String(16), default="raw", server_default="raw")
    """raw (hashes), cades or pades: what the signing worker builds once approved."""
    payload: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    """Per document: how to finish it (prepared PAdES state, CAdES signed attributes, paths)."""
    provider_transaction: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """Delegated credentials: the provider's transaction the signer confirms in its app."""
    finisher: Mapped[str | None] = mapped_column(String(64), nullable=True)
    finishing_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """The worker building this request's documents, and until when its lease holds (coordination, not state)."""
    blobs: Mapped[str | None] = mapped_column(String(8), nullable=True)
    """Its files in the blob dir: ``live`` until it ends, ``kept`` (signed outputs, until retention), ``gone``."""
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When housekeeping first saw it ended: the retention of its signed documents counts from here."""

    items: Mapped[list[RequestItem]] = relationship(back_populates="request", order_by="RequestItem.position")
    credential: Mapped[Credential] = relationship()
    user: Mapped[User] = relationship()

    # The hot paths look for open requests (pending, approved) among every finished one: each index
    # leads with what they compare for equality, so that SQLite's planner, which has no statistics,
    # reads the open ones only (a peak day adds 200,000 finished requests).
    __table_args__ = (
        Index("ix_signing_requests_rs_created", "relying_system", "created_at"),
        Index("ix_signing_requests_rs_state", "relying_system", "state", "expires_at"),  # a system's pending
        Index("ix_signing_requests_user_state", "user_id", "state", "expires_at"),  # a signer's pending
        Index("ix_signing_requests_state_sad", "state", "sad_hash"),  # the workers' approved work, expiries
        Index("ix_signing_requests_blobs_ended", "blobs", "ended_at"),  # housekeeping: past retention only
        UniqueConstraint("client_id", "idempotency_key", name="uq_requests_idempotency"),
        UniqueConstraint("sad_hash", name="uq_signing_requests_sad_hash"),
    )


class RequestItem(Base):
    """One data-to-be-signed hash of a request, with what the signer is shown of it."""

    __tablename__ = "request_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("signing_requests.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    digest: Mapped[bytes] = mapped_column(LargeBinary(64))
    title: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    state: Mapped[ItemState] = mapped_column(enum_column(ItemState, "item_state"))
    reserved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    request: Mapped[SigningRequest] = relationship(back_populates="items")

    __table_args__ = (
        UniqueConstraint("request_id", "position", name="uq_request_items_position"),
        # The reclaimer looks for reserved hashes; an approval and a reservation move one request's.
        Index("ix_request_items_state_request", "state", "request_id"),
    )


class Document(Base):
    """A file a client uploaded (streamed to the blob dir) to be signed by a later request."""

    __tablename__ = "documents"
    __table_args__ = (
        # Its client's uploads of the last minute (each upload's rate check): a range, not all it stored.
        Index("ix_documents_client_created", "client_id", "created_at"),
        # Housekeeping's uploads past retention: those still stored, not every one it ever deleted.
        Index("ix_documents_deleted_retained", "deleted_at", "retained_from"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retained_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    """The upload, or the end of the last request that used it: retention counts from here."""
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Deleted by housekeeping; the row stays so that the id answers 410 ``document_gone``."""


class ProviderCallback(Base):
    """A provider's call back about a delegated request, kept so that a repeated delivery applies once."""

    __tablename__ = "provider_callbacks"
    __table_args__ = (UniqueConstraint("provider", "callback_id", name="uq_provider_callbacks_provider_callback"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    callback_id: Mapped[str] = mapped_column(String(191))
    transaction: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
