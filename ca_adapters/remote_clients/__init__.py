"""The four providers' remote-signing clients, one module each, over :class:`RemoteSigningClient`.

Each module's ``parse_*`` functions read one documented reply each; they are what the sample tests
replay, so a change that drifts from the published shapes fails there first.
"""

from ca_adapters.remote_clients.misa import MisaClient
from ca_adapters.remote_clients.nacencomm import NacencommClient
from ca_adapters.remote_clients.viettel import ViettelClient
from ca_adapters.remote_clients.vnpt import VnptClient
from ca_adapters.remote_signing import RemoteSigningClient

CLIENTS: dict[str, type[RemoteSigningClient]] = {
    "vnpt": VnptClient, "viettel": ViettelClient, "misa": MisaClient, "nacencomm": NacencommClient,
}
