"""A private PostgreSQL cluster for tests that stop the database: initdb in a temporary
directory, its own port on loopback, never the shared server."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from kyso.sandbox import free_port
from tests.support import in_ci

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _bin(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


class PrivatePostgres:
    """``initdb`` + ``pg_ctl``; as root, the cluster runs as the ``postgres`` user (initdb refuses root)."""

    def __init__(self) -> None:
        import pytest

        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            if in_ci():
                pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self._pg_ctl = pg_ctl
        # Directly under /tmp: the postgres user cannot enter pytest's 0700 temporary dirs.
        self.directory = Path(tempfile.mkdtemp(prefix="kyso-pg-"))
        self.data = self.directory / "pgdata"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run(self._pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w",
                  "-t", "30", "start")

    def stop(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        """Stop if running and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, *args: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:1])} failed: {result.stderr.strip() or result.stdout.strip()}")
