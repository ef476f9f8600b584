"""The relying party's API credentials at an emulated provider, kept 0600 beside its CA."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    client_secret: str


def api_client(ca_dir: Path) -> ApiClient:
    """The client id and secret the emulator accepts (made on first use)."""
    path = ca_dir / "api-client.json"
    if not path.exists():
        data = {"client_id": f"kyso-{ca_dir.name}", "client_secret": secrets.token_urlsafe(24)}
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        try:
            os.link(tmp, path)  # first writer wins; a racing second one reads the winner's secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data = json.loads(path.read_text())
    return ApiClient(data["client_id"], data["client_secret"])
