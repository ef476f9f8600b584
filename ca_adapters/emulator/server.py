"""Build an emulator's app and run one or several on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from ca_adapters.emulator.pki_routes import pki_router
from ca_adapters.emulator.state import EmulatorState
from ca_adapters.registry import PROVIDERS
from ca_adapters.testpki import EMULATOR_HOST, TestPki


class PhoneMode(BaseModel):
    mode: str


class Outages(BaseModel):
    services: list[str]


class NewProviderUser(BaseModel):
    user_id: str
    full_name: str
    organization: str | None = None


def _control_router(state: EmulatorState) -> APIRouter:
    """Test controls, under a prefix no real provider uses."""
    router = APIRouter(prefix="/_emulator")

    @router.put("/phone")
    def phone(body: PhoneMode) -> dict[str, str]:
        state.set_phone(body.mode)
        return {"mode": state.phone_mode}

    @router.put("/outages")
    def outages(body: Outages) -> dict[str, list[str]]:
        state.outages = set(body.services)
        return {"services": sorted(state.outages)}

    @router.post("/users")
    def add_user(body: NewProviderUser) -> dict[str, str]:
        user = state.add_user(body.user_id, body.full_name, body.organization)
        return {"user_id": user.user_id, "password": user.password, "serial": f"{user.certificate.serial_number:x}"}

    return router


def emulator_app(pki_dir: Path, provider: str, *, ttl_seconds: float = 300.0) -> FastAPI:
    """One provider's emulator: PKI services, its remote-signing API, and test controls."""
    from ca_adapters.emulator.provider_apis import signing_api_router

    adapter = PROVIDERS[provider](pki_dir)
    state = EmulatorState(adapter.ca, ttl_seconds=ttl_seconds)
    app = FastAPI(title=f"{adapter.profile.display_name} emulator (TEST)", docs_url=None, redoc_url=None)
    app.state.emulator = state
    app.include_router(pki_router(state))
    app.include_router(_control_router(state))
    app.include_router(signing_api_router(provider, state))
    return app


class EmulatorSet:
    """Several providers' emulators on their fixed loopback ports, served from one background thread."""

    def __init__(self, pki_dir: Path, providers: list[str], *, ttl_seconds: float = 300.0) -> None:
        pki = TestPki(pki_dir)
        self.servers: dict[str, uvicorn.Server] = {}
        self.apps: dict[str, FastAPI] = {}
        for name in providers:
            ca = pki.issuing_ca(PROVIDERS[name].profile)
            app = emulator_app(pki_dir, name, ttl_seconds=ttl_seconds)
            self.apps[name] = app
            config = uvicorn.Config(app, host=EMULATOR_HOST, port=ca.port, log_level="warning", lifespan="off")
            self.servers[name] = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def state(self, provider: str) -> EmulatorState:
        return self.apps[provider].state.emulator  # type: ignore[no-any-return]

    async def serve(self) -> None:
        await asyncio.gather(*(server.serve() for server in self.servers.values()))

    def start(self, timeout: float = 20.0) -> EmulatorSet:
        self._thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="ca-emulators", daemon=True)
        self._thread.start()
        _wait(lambda: all(s.started for s in self.servers.values()) or not self._thread.is_alive(), timeout)
        if not all(s.started for s in self.servers.values()):
            self.stop()
            raise RuntimeError("the CA emulators did not start (is a port in use?)")
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
