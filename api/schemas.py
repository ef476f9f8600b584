"""Request and response models of the confirmation API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from biometrics import Decision


class DeviceEnrollIn(BaseModel):
    activation_code: str = Field(min_length=4, max_length=64)
    public_key: str = Field(description="The device's P-256 public key: base64 DER SubjectPublicKeyInfo.")
    name: str = Field(default="phone", max_length=128)


class DeviceEnrollOut(BaseModel):
    device_id: str
    device_token: str = Field(description="Bearer token for this device's calls; shown once.")
    username: str
    full_name: str


class DocumentView(BaseModel):
    position: int
    title: str
    summary: str
    hash: str = Field(description="Hex digest being signed.")
    options: dict[str, str | bool] = Field(
        default_factory=dict,
        description="What changes the signature's meaning, shown and bound (PAdES: field_name, certify, and "
                    "reason, location, stamp_text when given); empty for raw hashes and CAdES.")


class PendingRequest(BaseModel):
    request_id: str
    credential_id: str
    relying_system: str
    hash_algorithm: str
    verification_code: str
    binding: str = Field(description="base64 of the 32-byte binding the device signs; a device recomputes it "
                                     "from the other fields and refuses a mismatch.")
    nonce: str
    expires_at: datetime
    documents: list[DocumentView]


class PendingList(BaseModel):
    requests: list[PendingRequest]


class DecisionIn(BaseModel):
    decision: Decision
    counter: int = Field(ge=1, le=2**63 - 1, description="Greater than the device's last; a signed 64-bit integer.")
    signature: str = Field(description='base64 DER ECDSA over "kyso-approve-v1" ‖ binding ‖ decision ‖ counter.')


class RequestStatus(BaseModel):
    request_id: str
    state: str
    verification_code: str
    expires_at: datetime
    decided_at: datetime | None = None
