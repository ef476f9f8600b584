"""Providers by name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ca_adapters.base import CaAdapter, UnknownProvider
from ca_adapters.emulated import EmulatedCaAdapter
from ca_adapters.misa import MisaAdapter
from ca_adapters.nacencomm import NacencommAdapter
from ca_adapters.viettel import ViettelAdapter
from ca_adapters.vnpt import VnptAdapter

PROVIDERS: dict[str, type[EmulatedCaAdapter]] = {
    "viettel": ViettelAdapter,
    "vnpt": VnptAdapter,
    "misa": MisaAdapter,
    "nacencomm": NacencommAdapter,
}


def provider_names() -> list[str]:
    return sorted(PROVIDERS)


def get_adapter(name: str, pki_dir: Path, *, test_mode: bool = True,
                endpoints: Mapping[str, str] | None = None) -> CaAdapter:
    """The provider's adapter; ``endpoints`` replaces its service URLs (a real provider's, in production)."""
    try:
        cls = PROVIDERS[name]
    except KeyError as exc:
        raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(provider_names())}") from exc
    return cls(pki_dir, test_mode=test_mode, endpoints=endpoints)
