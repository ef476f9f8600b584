"""Units, users, their credentials and audit events."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db.models.base import Base, enum_column, utcnow


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


class Unit(Base):
    """A budget-using unit (đơn vị sử dụng ngân sách)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    signing_mode: Mapped[SigningMode] = mapped_column(enum_column(SigningMode, "signing_mode"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="unit")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(255))
    national_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"))
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
    status: Mapped[CredentialStatus] = mapped_column(enum_column(CredentialStatus, "credential_status"))
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
    mode: Mapped[CredentialMode] = mapped_column(enum_column(CredentialMode, "credential_mode"),
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
