"""SQLAlchemy 2 typed models, by domain; every model is importable from here, and importing this
package registers them all on ``Base.metadata`` (what Alembic compares against)."""

from broker.db.models.approvals import (
    ActivationCode,
    ApprovalDevice,
    DeviceStatus,
    WebAuthnChallenge,
    WebAuthnCredential,
    WebSession,
)
from broker.db.models.base import Base
from broker.db.models.clients import (
    AccessToken,
    ClientStatus,
    DeliveryState,
    OAuthClient,
    RelyingSystem,
    RelyingSystemUnit,
    WebhookDelivery,
)
from broker.db.models.core import (
    AuditEvent,
    Credential,
    CredentialMode,
    CredentialStatus,
    Role,
    SigningMode,
    Unit,
    User,
)
from broker.db.models.requests import (
    FINAL_STATES,
    Document,
    ItemState,
    ProviderCallback,
    RequestItem,
    RequestState,
    SigningRequest,
)

__all__ = [
    "AccessToken",
    "ActivationCode",
    "ApprovalDevice",
    "AuditEvent",
    "Base",
    "ClientStatus",
    "Credential",
    "CredentialMode",
    "CredentialStatus",
    "DeliveryState",
    "DeviceStatus",
    "Document",
    "FINAL_STATES",
    "ItemState",
    "OAuthClient",
    "ProviderCallback",
    "RelyingSystem",
    "RelyingSystemUnit",
    "RequestItem",
    "RequestState",
    "Role",
    "SigningMode",
    "SigningRequest",
    "Unit",
    "User",
    "WebAuthnChallenge",
    "WebAuthnCredential",
    "WebSession",
    "WebhookDelivery",
]
