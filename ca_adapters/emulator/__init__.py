"""Local emulators of the four providers: issuing CA, OCSP, CRL, TSA and the remote-signing API.

Started on loopback by ``kyso ca emulate NAME``, by ``kyso sandbox`` and by the tests; nothing
here ever calls a real provider.
"""

from ca_adapters.emulator.server import EmulatorSet, emulator_app

__all__ = ["EmulatorSet", "emulator_app"]
