"""Throw-away state for benchmarks and tests: a data dir with one signer and one credential, and an
emptied PostgreSQL database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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


def fresh_database(url: str, *, create: bool = True) -> None:
    """Empty a PostgreSQL database (its ``public`` schema dropped with everything in it, and made
    again); with ``create``, create it first if it is missing."""
    target = make_url(url)
    if create:
        admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}) is None:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
        admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
