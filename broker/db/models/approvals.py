"""Approval devices, activation codes, WebAuthn authenticators and the approval page's sessions."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db.models.base import Base, enum_column, utcnow
from broker.db.models.core import User


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
    status: Mapped[DeviceStatus] = mapped_column(enum_column(DeviceStatus, "device_status"))
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
    status: Mapped[DeviceStatus] = mapped_column(enum_column(DeviceStatus, "device_status"))
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
