"""Local emulators of the four providers: issuing CA, OCSP, CRL, TSA and the remote-signing API.

Started on loopback by ``kyso ca emulate NAME``, by ``kyso sandbox`` and by the tests; nothing
here ever calls a real provider. The servers are in ``server.py``: importing this package loads
nothing, so that an adapter can use the emulator's API client without importing the servers.
"""
