"""Relying systems, their OAuth2 clients and tokens, and the webhooks sent to them."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.db.models.base import Base, enum_column, utcnow
from broker.db.models.core import Unit


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
    stored_uploads: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Its uploads still stored (until housekeeping deletes them): counted as each is registered and
    deleted, so that an upload's quota check reads one row, whatever the number stored."""
    stored_upload_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

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
    status: Mapped[ClientStatus] = mapped_column(enum_column(ClientStatus, "client_status"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    relying_system: Mapped[RelyingSystem] = relationship()


class AccessToken(Base):
    """An opaque bearer token, stored hashed."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.client_id"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    """Refused from then on, and deleted by the signing worker's housekeeping."""

    client: Mapped[OAuthClient] = relationship()


class DeliveryState(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One webhook event for a relying system, claimed and retried with backoff by any worker."""

    __tablename__ = "webhook_deliveries"
    # The due ones, oldest first, among every delivery ever made (each worker looks at every tick).
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Also the ``Kyso-Event-Id`` header."""
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    relying_system_id: Mapped[int] = mapped_column(ForeignKey("relying_systems.id"))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(enum_column(DeliveryState, "delivery_state"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
