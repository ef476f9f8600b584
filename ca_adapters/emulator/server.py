"""Build an emulator's app and run one or several on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from ca_adapters.emulator.pki_routes import pki_router
from ca_adapters.emulator.provider_apis import callback_sender, signing_api_router
from ca_adapters.emulator.state import CallbackTarget, EmulatorState
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
    seal: bool = False


class TokenPolicy(BaseModel):
    ttl_seconds: float = 3600.0
    revoke: list[str] = []
    """Users whose sessions the provider revokes."""


class CallbackRegistration(BaseModel):
    """What an integrator registers with the provider out of band."""

    url: str | None = None
    token_url: str | None = None
    client_id: str = ""
    client_secret: str = ""


def register_callback(state: EmulatorState, provider: str, target: CallbackTarget | None) -> None:
    """Where the provider calls back (None: nowhere), with its way of delivering."""
    sender = callback_sender(provider)
    if target is not None and sender is None:
        raise HTTPException(400, f"{provider} does not call back")
    state.set_callback(target, sender)


def _control_router(state: EmulatorState, provider: str) -> APIRouter:
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
        user = state.add_user(body.user_id, body.full_name, body.organization, seal=body.seal)
        return {"user_id": user.user_id, "password": user.password, "serial": f"{user.certificate.serial_number:x}",
                "idcts": str(user.idcts)}

    @router.put("/callback")
    def callback(body: CallbackRegistration) -> dict[str, str | None]:
        target = CallbackTarget(body.url, body.token_url, body.client_id, body.client_secret) if body.url else None
        register_callback(state, provider, target)
        return {"url": body.url}

    @router.put("/tokens")
    def tokens(body: TokenPolicy) -> dict[str, float]:
        state.token_ttl_seconds = body.ttl_seconds
        for user_id in body.revoke:
            state.revoked_sessions.add(user_id)
        return {"ttl_seconds": state.token_ttl_seconds}

    return router


def emulator_app(pki_dir: Path, provider: str, *, ttl_seconds: float = 300.0) -> FastAPI:
    """One provider's emulator: PKI services, its remote-signing API, and test controls."""
    adapter = PROVIDERS[provider](pki_dir)
    state = EmulatorState(adapter.ca, ttl_seconds=ttl_seconds)
    app = FastAPI(title=f"{adapter.profile.display_name} emulator (TEST)", docs_url=None, redoc_url=None)
    app.state.emulator = state

    @app.middleware("http")
    async def misbehave(request: Request, call_next: Any) -> Any:
        # Test control: the provider answers an HTML error page, or too slowly (its API only).
        if not request.url.path.startswith("/_emulator") and state.reply_mode == "html":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=200)
        if not request.url.path.startswith("/_emulator") and state.reply_mode == "slow":
            await asyncio.sleep(state.slow_seconds)
        return await call_next(request)

    app.include_router(pki_router(state))
    app.include_router(_control_router(state, provider))
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
