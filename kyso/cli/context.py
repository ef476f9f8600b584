"""What every CLI command shares: the data dir and, on first use, the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from broker import admin_socket
from broker.errors import NotInitialised
from broker.runtime import Runtime
from broker.settings import Settings, load_settings


@dataclass
class CliState:
    data_dir: Path
    _runtime: Runtime | None = field(default=None, repr=False)
    _server: admin_socket.AdminClient | None = field(default=None, repr=False)
    _looked_for_server: bool = field(default=False, repr=False)

    def settings(self) -> Settings:
        return load_settings(self.data_dir)

    def runtime(self) -> Runtime:
        if self._runtime is None:
            settings = self.settings()
            if not settings.config_path.exists():
                raise NotInitialised(f"{self.data_dir} is not a kyso data dir; run 'kyso init --data-dir {self.data_dir}'")
            # Beside a running server, the server signs the periodic audit checkpoints: the CLI never logs in.
            self._runtime = Runtime(settings, interval_checkpoints=self.server() is None)
        return self._runtime

    def server(self) -> admin_socket.AdminClient | None:
        """The running server's admin socket, if one serves this data dir: HSM work goes there.

        Only one process at a time should be logged in to a SoftHSM token (each login rewrites its file);
        when no server runs, the CLI opens the token itself.
        """
        if not self._looked_for_server:
            self._looked_for_server = True
            self._server = admin_socket.connect(self.data_dir)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runtime is not None:
            self._runtime.close()


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj
