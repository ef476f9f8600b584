"""What every CLI command shares: the data dir and, on first use, the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from broker.errors import NotInitialised
from broker.runtime import Runtime
from broker.settings import Settings, load_settings


@dataclass
class CliState:
    data_dir: Path
    _runtime: Runtime | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        return load_settings(self.data_dir)

    def runtime(self) -> Runtime:
        if self._runtime is None:
            settings = self.settings()
            if not settings.config_path.exists():
                raise NotInitialised(f"{self.data_dir} is not a kyso data dir; run 'kyso init --data-dir {self.data_dir}'")
            self._runtime = Runtime(settings)
        return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj
