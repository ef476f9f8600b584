"""Set-up of prometheus-client's multi-process mode, for whoever starts the workers.

Deliberately free of prometheus-client imports: the library chooses per-process or shared storage
when it is first imported, so the directory must be named before that, in the supervisor or at the
top of a worker.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Empty (or create) ``path`` and point this process, and the workers it starts, at it.

    Call once at server start, before any worker starts: files left by an earlier run would be
    summed in.
    """
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    os.environ[MULTIPROC_ENV] = str(path.resolve())
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        warnings.warn("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: this process's own "
                      "metrics stay out of the shared directory (its workers are not affected)", stacklevel=2)
    return path


def mark_process_dead(pid: int) -> None:
    """Call from the worker supervisor when a worker exits: drops the files of its live gauges."""
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(directory))
