"""Readiness: the database and the HSM token decide; TSA and OCSP are only reported.

Provider endpoints are probed concurrently with a short timeout, in the background, and the
result is cached for a few seconds, so that ``/readyz`` stays cheap even when a TSA hangs.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text

from broker.db.engine import read_transaction
from broker.runtime import Runtime
from ca_adapters import provider_names

log = logging.getLogger(__name__)

OK = "ok"


def check_database(runtime: Runtime) -> str:
    try:
        with read_transaction(runtime.sessions) as session:
            session.execute(text("SELECT 1"))
        return OK
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"down: {type(exc).__name__}"


def check_hsm(runtime: Runtime) -> str:
    """Token present and logged in; a ping is also what drives recovery after the token came back."""
    try:
        runtime.hsm.ping()
        return OK
    except Exception as exc:  # noqa: BLE001 - HsmError, or the token never opened at all
        return f"down: {getattr(exc, 'code', type(exc).__name__)}"


def probe(url: str, kind: str, timeout: float) -> str:
    """Reachable when the service answers below 500 to an empty request (it spends no timestamp)."""
    content_type = {"tsa": "application/timestamp-query", "ocsp": "application/ocsp-request"}[kind]
    try:
        response = httpx.post(url, content=b"", headers={"Content-Type": content_type}, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a bad URL is as unreachable as a refused connection
        return f"down: {type(exc).__name__}"
    return OK if response.status_code < 500 else f"down: HTTP {response.status_code}"


@dataclass
class _Snapshot:
    results: dict[str, dict[str, str]] = field(default_factory=dict)
    checked_at: float = 0.0


class EndpointMonitor:
    """TSA and OCSP reachability of every provider, refreshed in the background when stale."""

    def __init__(self, runtime: Runtime, *, ttl_seconds: float, timeout_seconds: float) -> None:
        self._runtime = runtime
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self._refreshing: threading.Thread | None = None
        self._first = threading.Event()

    def report(self) -> dict[str, Any]:
        """The latest results; the first call waits for one round (bounded by the probe timeout)."""
        self._refresh_if_stale()
        self._first.wait(self._timeout + 1.0)
        snapshot = self._snapshot
        age = round(time.monotonic() - snapshot.checked_at, 1) if snapshot.checked_at else None
        return {"providers": snapshot.results, "age_seconds": age}

    def _refresh_if_stale(self) -> None:
        with self._lock:
            fresh = time.monotonic() - self._snapshot.checked_at < self._ttl
            if fresh or (self._refreshing is not None and self._refreshing.is_alive()):
                return
            self._refreshing = threading.Thread(target=self._refresh, name="kyso-endpoint-probe", daemon=True)
            self._refreshing.start()

    def _targets(self) -> list[tuple[str, str, str]]:
        targets = []
        for name in provider_names():
            try:
                endpoints = self._runtime.ca(name).endpoints()
            except Exception as exc:  # noqa: BLE001 - one provider's misconfiguration is reported, not fatal
                log.warning("provider endpoints unavailable", extra={"provider": name, "error": type(exc).__name__})
                continue
            targets += [(name, kind, url) for kind, url in (("tsa", endpoints.tsa_url), ("ocsp", endpoints.ocsp_url))
                        if url]
        return targets

    def _refresh(self) -> None:
        try:
            targets = self._targets()
            results: dict[str, dict[str, str]] = {}
            with ThreadPoolExecutor(max_workers=max(1, min(16, len(targets)))) as pool:
                outcomes = pool.map(lambda t: probe(t[2], t[1], self._timeout), targets)
                for (name, kind, _), outcome in zip(targets, outcomes, strict=True):
                    results.setdefault(name, {})[kind] = outcome
            self._snapshot = _Snapshot(results, time.monotonic())
        finally:
            self._first.set()
