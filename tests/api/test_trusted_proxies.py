"""``X-Forwarded-For`` sets the audited origin only when it comes from a configured proxy, on a
server configured as ``kyso serve`` and the sandbox configure theirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from api.app import create_app
from broker.db.engine import transaction
from broker.db.models import AuditEvent
from broker.runtime import Runtime
from broker.settings import Settings
from kyso.sandbox import free_port
from kyso.server import uvicorn_config
from tests.conftest import Enrolled
from tests.support import relying_system_client, uvicorn_thread

FORGED = "203.0.113.9"


@pytest.fixture(scope="module")
def client_credentials(runtime: Runtime, enrolled: Enrolled) -> tuple[str, str]:
    return relying_system_client(runtime, "dvc-proxies", (enrolled.unit,))


@contextmanager
def serving(runtime: Runtime, trusted_proxies: list[str]) -> Iterator[str]:
    settings = runtime.settings.model_copy(update={"trusted_proxies": trusted_proxies})
    port = free_port()
    config = uvicorn_config(create_app(runtime), settings, host="127.0.0.1", port=port, log_level="warning")
    with uvicorn_thread(config):
        yield f"http://127.0.0.1:{port}"


def audited_origin(runtime: Runtime, base_url: str, credentials: tuple[str, str]) -> str:
    """The actor of the ``token.issue`` event of a token asked for with a forged X-Forwarded-For."""
    response = httpx.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=credentials,
                          headers={"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "https"})
    assert response.status_code == 200, response.text
    with transaction(runtime.sessions) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "token.issue",
                                                   AuditEvent.target_id == credentials[0])
                          .order_by(AuditEvent.id.desc())).first()
        assert event is not None
        return event.actor.rsplit("@", 1)[1]


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"], ["::1"]])
def test_forwarded_for_is_ignored_unless_from_a_trusted_proxy(runtime: Runtime, client_credentials: tuple[str, str],
                                                              trusted: list[str]) -> None:
    with serving(runtime, trusted) as base_url:
        assert audited_origin(runtime, base_url, client_credentials) == "127.0.0.1"


@pytest.mark.parametrize("trusted", [["127.0.0.1"], ["127.0.0.0/8", "10.0.0.0/8"]])
def test_forwarded_for_from_a_trusted_proxy_is_the_origin(runtime: Runtime, client_credentials: tuple[str, str],
                                                          trusted: list[str]) -> None:
    with serving(runtime, trusted) as base_url:
        assert audited_origin(runtime, base_url, client_credentials) == FORGED


def test_the_default_trusts_no_proxy() -> None:
    config = uvicorn_config("api.app:create_app", Settings())
    assert config.proxy_headers is False


@pytest.mark.parametrize("entry", ["*", "proxy.internal", "10.0.0.0/33", ""])
def test_trusted_proxies_are_addresses_or_networks(entry: str) -> None:
    with pytest.raises(ValidationError):
        Settings(trusted_proxies=[entry])
