"""The local admin socket, both ends: a CLI beside a running server does its HSM work through it.

The server binds ``DATA_DIR/admin.sock`` (mode 0600) next to its TCP socket and names it in
``server.json``; the CLI, when it finds a live one, sends its HSM work there instead of logging in
to the token itself: SoftHSM rewrites its token file at every login, and two processes logging
in to one token lose look-ups or the token itself. The routes are in :mod:`api.admin`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import httpx

from broker.audit import cli_actor
from broker.errors import KysoError

log = logging.getLogger("kyso.server")
SOCKET_NAME = "admin.sock"
# A Unix socket path is at most 107 bytes on Linux: a deeper data dir has no admin socket.
_MAX_PATH = 100


def socket_path(data_dir: Path) -> Path | None:
    """``DATA_DIR/admin.sock``; None when the path is too long for a Unix socket (no admin socket then)."""
    path = data_dir.resolve() / SOCKET_NAME
    return path if len(str(path)) <= _MAX_PATH else None


def _ours(path: Path) -> bool:
    """A socket owned by this OS user, not a file or a socket someone else planted."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid()


def bind(data_dir: Path) -> socket.socket | None:
    """A listening Unix socket only this OS user can connect to; a stale file is replaced.

    None when another server on this data dir already serves one: the CLI goes to that one.
    """
    path = socket_path(data_dir)
    if path is None:
        log.warning("no admin socket: %s is too deep for a Unix socket path", data_dir)
        return None
    if path.exists() or path.is_symlink():
        if _ours(path) and _answers(path):
            return None
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: no window in which others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def unbind(sock: socket.socket | None, data_dir: Path) -> None:
    """Close the socket (uvicorn may have closed it already) and remove its file, if it was ours."""
    if sock is not None:
        sock.close()
        path = socket_path(data_dir)
        if path is not None:
            path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ServerError(KysoError):
    """An error the server reported, with its stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AdminClient:
    """The CLI's side: JSON calls over the Unix socket, errors re-raised with the server's code."""

    def __init__(self, path: Path, timeout: float = 600.0) -> None:
        me = cli_actor()  # the same OS user and host the CLI's own audit events name
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://kyso-admin/admin/v1",
                                  timeout=timeout, headers={"X-Kyso-OS-User": me.name, "X-Kyso-Host": me.origin or "unknown"})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServerError("server_unreachable", f"the running server did not answer: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                problem = response.json()
                raise ServerError(str(problem.get("code", "server_error")), str(problem.get("detail", "")))
            except ValueError as exc:
                raise ServerError("server_error", f"HTTP {response.status_code}") from exc
        return response.json() if response.content else None

    def close(self) -> None:
        self._http.close()


def connect(data_dir: Path) -> AdminClient | None:
    """A client for the server running on ``data_dir``, or None when none runs (the CLI opens the token)."""
    try:
        described = json.loads((data_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None
    path = socket_path(data_dir)  # never a path taken from the file: only the data dir's own socket
    if path is None or described.get("admin_socket") != str(path) or not _ours(path) or not _answers(path):
        return None
    return AdminClient(path)
