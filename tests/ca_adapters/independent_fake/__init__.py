"""An independent fake of each provider's remote-signing API, written from the sample bodies only.

It shares no code with kyso's emulators: it reads the documented bodies in ``samples/<provider>/``,
refuses a request that lacks a documented field (or carries it with another JSON type), answers
each call by copying the documented reply and putting its own values in, and signs the digest it
receives with an RSA-2048 key of its own (PKCS#1 v1.5), certified by a small CA chain it makes.

Calls no sample shows (VNPT's status request, Viettel's signHash reply, MISA's password login
request, Nacencomm's Getcert/ack replies and ``/ca.cer``) are answered the way the samples
around them suggest; each provider's module names them.

The phone approves (or refuses, :attr:`IndependentFake.phone`) once the transaction has been
answered PENDING one time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from tests.ca_adapters.independent_fake import misa, nacencomm, viettel, vnpt
from tests.ca_adapters.independent_fake.state import FakeState

ROUTES: dict[str, Callable[[FakeState], list[Route]]] = {
    "vnpt": vnpt.routes, "viettel": viettel.routes, "misa": misa.routes, "nacencomm": nacencomm.routes,
}


class IndependentFake(FakeState):
    """One provider's fake, served on a free loopback port."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.server: uvicorn.Server | None = None
        self.base_url = ""

    def app(self) -> Starlette:
        return Starlette(routes=ROUTES[self.provider](self))

    def start(self) -> IndependentFake:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        self.server = uvicorn.Server(uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.provider} fake did not start")
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
