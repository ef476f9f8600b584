"""``kyso ca emulate NAME``: run a provider's emulator (CA, OCSP, CRL, TSA, signing API) on loopback."""

from __future__ import annotations

import signal
import threading

import typer

from ca_adapters import provider_names
from ca_adapters.emulator.server import EmulatorSet
from ca_adapters.emulator.state import PHONE_MODES
from kyso.cli.context import state
from kyso.cli.output import console

ca_app = typer.Typer(help="Certificate providers' local emulators.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ca_app, name="ca")


@ca_app.command("emulate")
def emulate(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"{', '.join(provider_names())} or all."),
    phone: str = typer.Option("approve", "--phone", help=f"What the simulated phone does: {', '.join(PHONE_MODES)}."),
    ttl: float = typer.Option(300.0, "--ttl", help="Seconds a signing transaction waits for the phone."),
) -> None:
    """Serve the emulator until interrupted, on the port written into its certificates."""
    names = provider_names() if name == "all" else [name]
    if any(n not in provider_names() for n in names):
        raise typer.BadParameter(f"unknown provider {name!r}; known: {', '.join(provider_names())}, all")
    if phone not in PHONE_MODES:
        raise typer.BadParameter(f"--phone is one of {', '.join(PHONE_MODES)}")
    emulators = EmulatorSet(state(ctx).settings().pki_dir, names, ttl_seconds=ttl)
    for n in names:
        emulators.state(n).set_phone(phone)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    emulators.start()
    for n in names:
        console.print(f"{n}: {emulators.state(n).ca.base_url} (OCSP /ocsp, CRL /crl/ca.crl, TSA /tsa)")
    stop.wait()
    emulators.stop()
