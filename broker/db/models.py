"""SQLAlchemy 2 typed models: units, users, credentials, audit events."""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SigningMode(str, enum.Enum):
    REMOTE = "remote"
    USB_TOKEN = "usb_token"


class Role(str, enum.Enum):
    CHIEF_ACCOUNTANT = "chief_accountant"
    ACCOUNT_HOLDER = "account_holder"
    OTHER = "other"


class CredentialStatus(str, enum.Enum):
    ACTIVE = "active"
    REVOKED = "revoked"


class CredentialMode(str, enum.Enum):
    HOSTED = "hosted"
    """The key is in kyso's HSM; kyso's sole-control layer signs after the signer's confirmation."""
    DELEGATED = "delegated"
    """The key stays at the provider; the provider's app confirms and signs, kyso builds the formats."""


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=32)


class Unit(Base):
    """A budget-using unit (đơn vị sử dụng ngân sách)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    signing_mode: Mapped[SigningMode] = mapped_column(_enum(SigningMode, "signing_mode"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="unit")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    national_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Set by ``kyso user disable``: none of the user's credentials signs until ``kyso user enable``."""

    unit: Mapped[Unit] = relationship(back_populates="users")
    credentials: Mapped[list[Credential]] = relationship(back_populates="user")


class Credential(Base):
    """A signing key in the HSM (``CKA_ID`` = ``id``) and the certificate a provider issued for it."""

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    provider: Mapped[str] = mapped_column(String(32))
    key_algorithm: Mapped[str] = mapped_column(String(16))
    signature_scheme: Mapped[str] = mapped_column(String(16))
    status: Mapped[CredentialStatus] = mapped_column(_enum(CredentialStatus, "credential_status"))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)
    chain: Mapped[list[str]] = mapped_column(JSON)
    """Base64 DER certificates above the signer's: intermediates, then the root."""
    serial_hex: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failed_confirmations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    mode: Mapped[CredentialMode] = mapped_column(_enum(CredentialMode, "credential_mode"),
                                                 default=CredentialMode.HOSTED, server_default="hosted")
    provider_ref: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    """Delegated mode: how the provider names the signer and the certificate (user id, credential ref)."""

    user: Mapped[User] = relationship(back_populates="credentials")

    @property
    def delegated(self) -> bool:
        return self.mode is CredentialMode.DELEGATED

    __table_args__ = (UniqueConstraint("provider", "serial_hex", name="uq_credentials_provider_serial"),)


class AuditEvent(Base):
    """One audited action, hash-chained to the previous event."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


# -- signer confirmation -------------------------------------------------------------------------


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
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    relying_system: Mapped[str] = mapped_column(String(64))
    state: Mapped[RequestState] = mapped_column(_enum(RequestState, "request_state"), index=True)
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
    blobs: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    """Its files in the blob dir: ``live`` until it ends, ``kept`` (signed outputs, until retention), ``gone``."""
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When housekeeping first saw it ended: the retention of its signed documents counts from here."""

    items: Mapped[list[RequestItem]] = relationship(back_populates="request", order_by="RequestItem.position")
    credential: Mapped[Credential] = relationship()
    user: Mapped[User] = relationship()

    __table_args__ = (
        Index("ix_signing_requests_rs_created", "relying_system", "created_at"),
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
    state: Mapped[ItemState] = mapped_column(_enum(ItemState, "item_state"))
    reserved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    request: Mapped[SigningRequest] = relationship(back_populates="items")

    __table_args__ = (
        UniqueConstraint("request_id", "position", name="uq_request_items_position"),
        Index("ix_request_items_state", "state"),  # the reclaimer looks for reserved hashes
    )


class DeviceStatus(str, enum.Enum):
    ACTIVE = "active"
    REVOKED = "revoked"


class ApprovalDevice(Base):
    """A signer's phone: a P-256 key in its secure hardware, unlocked by face or fingerprint."""

    __tablename__ = "approval_devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the device's bearer token (for listing its user's requests)."""
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[DeviceStatus] = mapped_column(_enum(DeviceStatus, "device_status"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    user: Mapped[User] = relationship()


class ActivationCode(Base):
    """A one-time code an administrator issues to enroll a phone or register an authenticator."""

    __tablename__ = "activation_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    user: Mapped[User] = relationship()


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    """The credential id, base64url."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[DeviceStatus] = mapped_column(_enum(DeviceStatus, "device_status"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    name: Mapped[str] = mapped_column(String(128), default="browser authenticator")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    user: Mapped[User] = relationship()


class WebAuthnChallenge(Base):
    """A ceremony's challenge, single use and short lived."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, nullable=True)
    """None for a sign-in started with an unknown username (it can never succeed)."""
    purpose: Mapped[str] = mapped_column(String(16))
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebSession(Base):
    """A signer signed in on the approval page (cookie holds the token; we keep its hash)."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    authenticator_id: Mapped[str | None] = mapped_column(ForeignKey("webauthn_credentials.id"), index=True,
                                                         nullable=True)
    """The authenticator that opened the session: revoking it ends the session."""
    created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Each use slides ``expires_at`` forward (at most once a minute, so a poll is not a write)."""
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """The browser that signed in, so that the signer recognises the session in the list."""

    user: Mapped[User] = relationship()


# -- relying systems and their OAuth2 clients ----------------------------------------------------------


class RelyingSystem(Base):
    """A system that submits signing requests (the treasury's DVC portal); it serves a set of units."""

    __tablename__ = "relying_systems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """What signers see ("Cổng DVC Kho bạc"); the name when unset."""
    webhook_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """HMAC key of this system's webhooks (kyso must sign with it, so it is kept, not hashed)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    units: Mapped[list[Unit]] = relationship(secondary="relying_system_units")


class RelyingSystemUnit(Base):
    __tablename__ = "relying_system_units"

    relying_system_id: Mapped[int] = mapped_column(ForeignKey("relying_systems.id"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), primary_key=True)


class ClientStatus(str, enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    relying_system_id: Mapped[int] = mapped_column(ForeignKey("relying_systems.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[ClientStatus] = mapped_column(_enum(ClientStatus, "client_status"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    relying_system: Mapped[RelyingSystem] = relationship()


class AccessToken(Base):
    """An opaque bearer token, stored hashed."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.client_id"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    client: Mapped[OAuthClient] = relationship()


class Document(Base):
    """A file a client uploaded (streamed to the blob dir) to be signed by a later request."""

    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    retained_from: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    """The upload, or the end of the last request that used it: retention counts from here."""
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """Deleted by housekeeping; the row stays so that the id answers 410 ``document_gone``."""


class DeliveryState(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One webhook event for a relying system, claimed and retried with backoff by any worker."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Also the ``Kyso-Event-Id`` header."""
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    relying_system_id: Mapped[int] = mapped_column(ForeignKey("relying_systems.id"))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(_enum(DeliveryState, "delivery_state"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


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
