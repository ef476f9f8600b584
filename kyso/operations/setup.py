"""Making a data dir: settings, secrets, token, database and the test PKI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from broker import audit
from broker.audit import Actor
from broker.db.engine import make_engine, session_factory, transaction
from broker.db.migrate import upgrade
from broker.errors import Conflict
from broker.settings import Settings, generate_pin, write_private_json
from ca_adapters import get_adapter, provider_names
from hsm.library import initialize_token
from hsm.store import activate_token_store


def is_initialised(settings: Settings) -> bool:
    return settings.config_path.exists()


def init_data_dir(settings: Settings, actor: Actor, *, sandbox: bool) -> list[str]:
    """Create everything a data dir needs; return what was generated (never the values)."""
    data_dir = settings.data_dir
    if is_initialised(settings):
        raise Conflict(f"{data_dir} is already initialised")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise Conflict(f"{data_dir} is not empty; kyso init needs a new or empty directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _init(settings, actor, sandbox=sandbox)
    except BaseException:
        # Nothing half made: a failed init leaves an empty directory to retry in.
        for child in data_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise


def _init(settings: Settings, actor: Actor, *, sandbox: bool) -> list[str]:
    data_dir = settings.data_dir
    os.chmod(data_dir, 0o700)
    generated: list[str] = []
    secrets: dict[str, str] = {}
    so_pin = settings.hsm_so_pin.get_secret_value() if settings.hsm_so_pin else None
    user_pin = settings.hsm_user_pin.get_secret_value() if settings.hsm_user_pin else None
    if so_pin is None:
        so_pin = secrets["hsm_so_pin"] = generate_pin()
        generated.append("HSM SO PIN")
    if user_pin is None:
        user_pin = secrets["hsm_user_pin"] = generate_pin()
        generated.append("HSM user PIN")
    if secrets:
        write_private_json(settings.secrets_path, secrets)

    activate_token_store(data_dir)
    initialize_token(settings.hsm_module, settings.hsm_token_label, so_pin, user_pin)
    upgrade(settings.db_url)
    for provider in provider_names():
        get_adapter(provider, settings.pki_dir).trust_anchors()  # creates root and issuing CA
    engine = make_engine(settings.db_url)
    try:
        with transaction(session_factory(engine)) as session:
            audit.record(session, actor, "init", details={"sandbox": sandbox, "token": settings.hsm_token_label})
    finally:
        engine.dispose()
    _write_config(settings.config_path, sandbox)
    return generated


def _write_config(path: Path, sandbox: bool) -> None:
    # Written last: its presence marks a complete data dir.
    path.write_text(f"# kyso settings for this data dir; KYSO_* environment variables override them.\nsandbox = {str(sandbox).lower()}\n")
