"""Idle keep-alive connections: the client must be the one to close them.

When the server closes an idle connection at the moment a client reuses it, the client's request
meets a reset and is lost (a phone's approval POST, which the client cannot safely send again).
httpx keeps idle connections 5 s, uvicorn by default 5 s too: the race the bench met.
"""

from __future__ import annotations

import httpx

from broker.settings import Settings
from kyso.server import uvicorn_config


def test_the_server_keeps_idle_connections_longer_than_clients_do() -> None:
    config = uvicorn_config("api.app:create_app", Settings())
    assert config.timeout_keep_alive > httpx.Limits().keepalive_expiry
    assert config.timeout_keep_alive > 60  # phones and proxies that keep theirs up to a minute
