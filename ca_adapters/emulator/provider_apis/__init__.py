"""Each provider's remote-signing API as its public material shows it, one module per provider.

The shapes and quirks are the point: an adapter that works against these would need only the
real host and credentials. Whatever no public source shows (rejection and expiry codes, error
bodies, Nacencomm's hash type and authentication) is labelled "modelled" where it is answered.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from ca_adapters.emulator.provider_apis import misa, nacencomm, viettel, vnpt
from ca_adapters.emulator.state import CallbackTarget, EmulatorState, Transaction

CallbackSender = Callable[[EmulatorState, Transaction, CallbackTarget], int]

SIGNING_APIS: dict[str, Callable[[EmulatorState], APIRouter]] = {
    "vnpt": vnpt.signing_api, "viettel": viettel.signing_api, "misa": misa.signing_api,
    "nacencomm": nacencomm.signing_api,
}
CALLBACK_SENDERS: dict[str, CallbackSender] = {
    "vnpt": vnpt.send_callback, "viettel": viettel.send_callback, "misa": misa.send_callback,
}
"""Nacencomm never calls back."""


def signing_api_router(provider: str, state: EmulatorState) -> APIRouter:
    return SIGNING_APIS[provider](state)


def callback_sender(provider: str) -> CallbackSender | None:
    """How the provider delivers one ended transaction to a registered target (None: it never calls back)."""
    return CALLBACK_SENDERS.get(provider)
