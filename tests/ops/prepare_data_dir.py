"""Make a data dir for the multi-worker tests, in its own process (one token store per process).

``python -m tests.ops.prepare_data_dir DATA_DIR [--key rsa-2048] [--phones N]`` with
``KYSO_DATABASE_URL`` set; prints JSON: client id and secret, the signer's credential (P-256
unless ``--key``) and an activation code for a phone (``activation_codes``: one per phone).
``bench/workers.py`` uses it too, with an RSA-2048 key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from broker import approvals, clients, credentials, directory
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Role, SigningMode
from broker.runtime import Runtime
from broker.settings import load_settings
from hsm import KeyAlgorithm
from kyso.operations import setup

ACTOR = Actor("test", "prepare-data-dir")
RELYING_SYSTEM = "dvc-ops"
SIGNER = "ops.ketoan"


def prepare(data_dir: Path, key: KeyAlgorithm = KeyAlgorithm.EC_P256, phones: int = 1,
            webhook_allow: list[str] | None = None) -> dict[str, object]:
    setup.init_data_dir(load_settings(data_dir), ACTOR, sandbox=True)
    runtime = Runtime(load_settings(data_dir))
    try:
        with transaction(runtime.sessions) as s:
            directory.add_unit(s, ACTOR, "OPS-001", "Trường Tiểu học Vận Hành", SigningMode.REMOTE)
            directory.add_user(s, ACTOR, username=SIGNER, unit_code="OPS-001", full_name="Lê Thị Vận Hành",
                               national_id="001185000777", role=Role.CHIEF_ACCOUNTANT)
            clients.add_relying_system(s, ACTOR, RELYING_SYSTEM, ["OPS-001"], webhook_allowlist=webhook_allow or [],
                                       allow_private=runtime.settings.webhook_allow_private)
            client, secret = clients.add_client(s, ACTOR, RELYING_SYSTEM)
            client_id = client.client_id
        with transaction(runtime.sessions) as s:
            credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("viettel"), username=SIGNER,
                                            key_algorithm=key)
            credential_id = credential.id
        with transaction(runtime.sessions) as s:
            codes = [approvals.issue_activation_code(s, runtime.settings, ACTOR, SIGNER)[0] for _ in range(phones)]
    finally:
        runtime.close()
    return {"client_id": client_id, "client_secret": secret, "credential_id": credential_id,
            "activation_code": codes[0], "activation_codes": codes}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--key", type=KeyAlgorithm, default=KeyAlgorithm.EC_P256)
    parser.add_argument("--phones", type=int, default=1)
    parser.add_argument("--webhook-allow", action="append", help="a webhook allowlist entry (repeat)")
    args = parser.parse_args()
    print(json.dumps(prepare(args.data_dir, args.key, args.phones, args.webhook_allow)))
