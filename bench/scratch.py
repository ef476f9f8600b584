"""A throw-away data dir with one signer and one credential: what benchmarks and memory tests sign with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker import credentials, directory
from broker.audit import Actor
from broker.db.engine import transaction
from broker.db.models import Credential, Role, SigningMode
from broker.runtime import Runtime
from broker.settings import load_settings
from hsm import KeyAlgorithm
from kyso.operations import setup

ACTOR = Actor("bench", "scratch")


def scratch_credential(data_dir: Path, **settings: Any) -> tuple[Runtime, Credential]:
    """A sandbox data dir at ``data_dir`` (its own token), a chief accountant with an RSA-2048 key
    certified by the VNPT emulator; ``settings`` override the data dir's settings. Close the runtime."""
    setup.init_data_dir(load_settings(data_dir), ACTOR, sandbox=True)
    runtime = Runtime(load_settings(data_dir, **settings))
    try:
        with transaction(runtime.sessions) as s:
            directory.add_unit(s, ACTOR, "B1", "Bench", SigningMode.REMOTE)
            directory.add_user(s, ACTOR, username="b", unit_code="B1", full_name="Nguyễn Thị Kế Toán",
                               national_id="001000000001", role=Role.CHIEF_ACCOUNTANT)
            credential = credentials.enroll(s, ACTOR, runtime.hsm, runtime.ca("vnpt"), username="b",
                                            key_algorithm=KeyAlgorithm.RSA_2048)
    except BaseException:
        runtime.close()
        raise
    return runtime, credential
