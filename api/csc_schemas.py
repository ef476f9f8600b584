"""The CSC request and response bodies, for the OpenAPI document.

The CSC routes read their JSON themselves (v2 accepts the v1 names too, and errors must be CSC
error bodies, not FastAPI's), so these models describe the bodies without validating them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InfoIn(BaseModel):
    lang: str | None = None


class SignAlgorithms(BaseModel):
    algos: list[str] = Field(description="Signature algorithm OIDs")
    algoParams: list[str] = Field(default_factory=list)  # noqa: N815


class InfoOut(BaseModel):
    specs: str = Field(description="1.0.4.0 under /csc/v1, 2.0.0.2 under /csc/v2")
    name: str
    logo: str = Field(description="URL of the service's logo")
    region: str
    lang: str
    description: str
    authType: list[str]  # noqa: N815 - CSC names
    oauth2: str = Field(description="The OAuth 2.0 server's base URI (its token endpoint is /oauth2/token)")
    methods: list[str]
    asynchronousOperationMode: bool | None = Field(default=None, description="v2 only")  # noqa: N815
    signAlgorithms: SignAlgorithms | None = Field(default=None, description="v2 only")  # noqa: N815


class CredentialsListIn(BaseModel):
    userID: str | None = Field(default=None, description="kyso username")  # noqa: N815
    maxResults: int | None = Field(default=None, ge=1, description="At most this many credential IDs")  # noqa: N815


class CredentialsListOut(BaseModel):
    credentialIDs: list[str]  # noqa: N815


class CredentialsInfoIn(BaseModel):
    credentialID: str  # noqa: N815
    certificates: str = Field(default="single", description="none, single or chain")
    certInfo: bool = False  # noqa: N815
    authInfo: bool = False  # noqa: N815


class KeyInfo(BaseModel):
    status: str = Field(description="enabled or disabled")
    algo: list[str] = Field(description="Signature algorithm OIDs the key signs with")
    len: int = Field(description="Key size in bits")
    curve: str | None = Field(default=None, description="EC keys: the curve's name")


class CertInfo(BaseModel):
    status: str = Field(description="valid or revoked")
    certificates: list[str] = Field(description="base64 DER: the signer's certificate, then the chain if asked")
    issuerDN: str  # noqa: N815
    serialNumber: str  # noqa: N815
    subjectDN: str  # noqa: N815
    validFrom: str  # noqa: N815
    validTo: str  # noqa: N815


class CredentialsInfoOut(BaseModel):
    key: KeyInfo
    cert: CertInfo
    multisign: int = Field(description="Most hashes one authorization covers")
    SCAL: str
    lang: str
    auth: dict[str, str] | None = Field(default=None, description="v2: {\"mode\": \"implicit\"}")
    authMode: str | None = Field(default=None, description="v1: implicit")  # noqa: N815


class HashesIn(BaseModel):
    hashes: list[str] | None = Field(default=None, description="v2: base64 hashes")
    hash: list[str] | None = Field(default=None, description="v1 name, accepted on v2 too")
    hashAlgorithmOID: str | None = Field(default=None, description="v2; e.g. 2.16.840.1.101.3.4.2.1")  # noqa: N815
    hashAlgo: str | None = Field(default=None, description="v1 name, accepted on v2 too")  # noqa: N815


class AuthorizeIn(HashesIn):
    credentialID: str  # noqa: N815
    numSignatures: int | None = None  # noqa: N815
    description: str | None = Field(default=None, description="Shown to the signer")


class AuthorizeOut(BaseModel):
    SAD: str = Field(description="Single use, bound to exactly these hashes")
    expiresIn: int  # noqa: N815


class SignHashIn(HashesIn):
    credentialID: str  # noqa: N815
    SAD: str
    signAlgo: str = Field(description="e.g. 1.2.840.113549.1.1.11, 1.2.840.113549.1.1.10, 1.2.840.10045.4.3.2")  # noqa: N815
    signAlgoParams: str | None = Field(default=None, description="base64 DER RSASSA-PSS-params")  # noqa: N815
    operationMode: str | None = Field(default=None, description="S only (synchronous)")  # noqa: N815


class SignHashOut(BaseModel):
    signatures: list[str]


class TimestampIn(BaseModel):
    hash: str = Field(description="base64 hash to timestamp")
    hashAlgorithmOID: str | None = Field(default=None, description="v2; or hashAlgo")  # noqa: N815
    hashAlgo: str | None = Field(default=None, description="v1 name, accepted on v2 too")  # noqa: N815
    nonce: str | None = Field(default=None, description="hexadecimal")


class TimestampOut(BaseModel):
    timestamp: str = Field(description="base64 DER RFC 3161 TimeStampToken")


def documented(body: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
    """``post()`` keyword arguments that document ``body`` and ``answer`` without validating them."""
    return {"openapi_extra": {"requestBody": {"required": True, "content": {
                "application/json": {"schema": body.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
            "response_model": answer}
