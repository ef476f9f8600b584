"""Settings: ``KYSO_*`` environment over ``DATA_DIR/kyso.toml`` over ``DATA_DIR/secrets.json``."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.errors import NotInitialised

DEFAULT_DATA_DIR = Path("kyso-data")
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KYSO_", extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    blob_dir: Path | None = None
    hsm_module: str = DEFAULT_PKCS11_MODULE
    hsm_token_label: str = "kyso"
    hsm_user_pin: SecretStr | None = None
    hsm_so_pin: SecretStr | None = None
    hsm_max_sessions: int = 8
    sandbox: bool = False
    """Set by ``kyso init --sandbox``: test-only key types and unconfirmed signing allowed."""

    # Signer confirmation
    request_ttl_seconds: int = 300
    tsa_timeout_seconds: int = 10
    """How long a TSA, OCSP responder or CRL server may take before a level above B-B fails."""
    provider_poll_seconds: float = 0.5
    """How often the worker asks a provider about a delegated request its signer has not answered yet."""
    max_batch: int = 50
    max_pending_per_user: int = 20
    timestamp_provider: str | None = "vnpt"
    """Whose TSA answers CSC ``signatures/timestamp`` (none: the method is not offered)."""
    sad_seconds: int = 300
    """How long a CSC Signature Activation Data stays usable."""
    authorize_wait_seconds: float = 120.0
    """How long CSC ``credentials/authorize`` waits for the signer before answering access_denied."""
    rate_limit_per_minute: int = 1200
    """New signing requests a relying system may create per minute (all its clients, all workers)."""
    max_pending_per_relying_system: int = 5000
    pending_retry_seconds: int = 5
    confirm_max_failures: int = 5
    confirm_lock_seconds: int = 300
    activation_ttl_seconds: int = 86400
    long_poll_seconds: float = 25.0
    reservation_timeout_seconds: int = 120
    webauthn_rp_id: str = "localhost"
    """Default: the host of ``public_base_url``."""
    webauthn_rp_name: str = "kyso"
    webauthn_origins: list[str] = ["http://localhost:8400"]
    """Default: ``public_base_url``. The approval page refuses POSTs from any other origin."""
    web_session_seconds: int = 900
    """The approval app's sign-in lasts this long after its last use (sliding), up to ``web_session_max_seconds``."""
    web_session_max_seconds: int = 30 * 86400
    preview_max_pages: int = 20
    """The approval app shows at most this many pages of a PDF, rendered on the server."""
    preview_seconds: float = 20.0
    """How long rendering a document's pages may take (the renderer is stopped then)."""
    public_base_url: str = "http://localhost:8400"
    """The address signers' phones and browsers reach; default: the address the server bound."""
    max_document_bytes: int = 100 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    """Largest JSON (or form) body; a larger one is refused (413) before it is read. Documents: PUT /v1/documents."""
    document_retention_days: int = 30
    """Uploaded and signed documents are deleted this long after their request ends (or their upload)."""
    max_upload_bytes_per_relying_system: int = 20 * 1024 * 1024 * 1024
    max_uploads_per_relying_system: int = 10_000
    """Uploads a relying system may keep stored at once (until signed and retention, or deletion)."""
    trust_store: Path | None = None
    """Trust anchors of POST /v1/validations: a PEM/DER file or a directory of them (the national root in
    production). Unset: the configured providers' roots."""
    validation_fetch_revocation: bool = False
    """Let a validation request fetch OCSP/CRL from the URLs in a document's certificates (off: embedded data only)."""
    webhook_allow_private: bool = False
    """Allow webhooks to private and loopback addresses (tests, sandboxes); off in production."""

    # Operations
    trusted_proxies: list[str] = []
    """Addresses or networks of reverse proxies whose ``X-Forwarded-For``/``-Proto`` are believed (the
    client address in audit and logs); none by default, so a caller cannot choose its own origin."""
    api_threads: int = 8
    """Threads per server process running the API's queries and HSM calls. Waits (long polls, a
    signer's confirmation) hold none; more threads than this only contend for the GIL and locks."""
    log_format: str | None = None
    """``json`` or ``text``; None lets the command choose (json for servers)."""
    readiness_probe_timeout_seconds: float = 2.0
    """How long ``/readyz`` waits for a provider's TSA or OCSP before reporting it down."""
    readiness_cache_seconds: float = 5.0

    audit_checkpoint_every: int = 1000
    """Sign a checkpoint of the audit chain every N events (0: only on demand, at backup and shutdown)."""
    audit_anchors_file: Path | None = None
    """Where signed checkpoints are appended (default DATA_DIR/audit-anchors.jsonl); ship it off the machine."""
    provider_endpoints: dict[str, dict[str, str]] = {}
    """Per provider, URLs that replace the emulator's: ``ocsp_url``, ``crl_url``, ``tsa_url``,
    ``signing_api_url`` (``[provider_endpoints.vnpt]`` in kyso.toml, or KYSO_PROVIDER_ENDPOINTS as JSON);
    ``callback_url``: where the provider calls back, as registered with it."""
    provider_callbacks: dict[str, dict[str, Any]] = {}
    """Per provider receiving call backs at /providers/NAME/callback: ``secret`` (the URL's ``key``; Viettel:
    its handshake's client secret), ``client_id`` (Viettel), ``allow_from`` (its addresses or networks)."""

    @model_validator(mode="after")
    def _follow_public_base_url(self) -> Settings:
        self._derive_from_base_url()
        return self

    def _derive_from_base_url(self) -> None:
        # Written through __dict__: a derived value must not count as set explicitly.
        if "webauthn_origins" not in self.model_fields_set:
            self.__dict__["webauthn_origins"] = [self.public_base_url.rstrip("/")]
        if "webauthn_rp_id" not in self.model_fields_set:
            self.__dict__["webauthn_rp_id"] = urlsplit(self.public_base_url).hostname or "localhost"

    def base_url_is_explicit(self) -> bool:
        return "public_base_url" in self.model_fields_set

    def serve_at(self, bound_url: str) -> None:
        """A server bound ``bound_url``: the default public base URL and WebAuthn origins become it."""
        if not self.base_url_is_explicit():
            self.__dict__["public_base_url"] = loopback_as_localhost(bound_url)
            self._derive_from_base_url()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a ValueError names the bad entry
        return value

    @property
    def blobs(self) -> Path:
        return self.blob_dir or self.data_dir / "blobs"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'kyso.db'}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def secrets_path(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "kyso.toml"

    @property
    def anchors_path(self) -> Path:
        return self.audit_anchors_file or self.data_dir / "audit-anchors.jsonl"

    def user_pin(self) -> str:
        if self.hsm_user_pin is None:
            raise NotInitialised(f"no HSM user PIN: run 'kyso init' or set KYSO_HSM_USER_PIN ({self.data_dir})")
        return self.hsm_user_pin.get_secret_value()


def loopback_as_localhost(url: str) -> str:
    """``http://127.0.0.1:P`` as ``http://localhost:P``: browsers accept WebAuthn on localhost, not on an IP."""
    parts = urlsplit(url)
    if parts.hostname in ("127.0.0.1", "::1", "localhost"):
        netloc = f"localhost:{parts.port}" if parts.port else "localhost"
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")
    return url.rstrip("/")


def resolve_data_dir(option: Path | None) -> Path:
    """``--data-dir``, else ``KYSO_DATA_DIR``, else ``./kyso-data``."""
    if option is not None:
        return option
    env = os.environ.get("KYSO_DATA_DIR")
    return Path(env) if env else DEFAULT_DATA_DIR


def load_settings(data_dir: Path, **overrides: Any) -> Settings:
    toml_path = data_dir / "kyso.toml"
    secrets_path = data_dir / "secrets.json"

    class _DataDirSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
                JsonConfigSettingsSource(settings_cls, json_file=secrets_path),
            )

    return _DataDirSettings(data_dir=data_dir, **overrides)


def write_private_json(path: Path, data: dict[str, str]) -> None:
    """Write a 0600 JSON file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    tmp.replace(path)


def generate_pin() -> str:
    return secrets.token_urlsafe(24)
