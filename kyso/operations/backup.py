"""``kyso backup``: the database, the settings file, the audit anchors and the test PKI; the
documents on request.

Never ``secrets.json`` (the PINs are supplied again on restore): the SoftHSM token store is copied
only on request, and its keys stay encrypted under the token's PINs. The test CA emulators' keys
(``pki/``) are copied, 0600, so that a restore goes on with the same roots instead of new ones.
A backup starts with a signed audit checkpoint, the anchor a restore returns to (``restore.py``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import text

from broker import audit
from broker.audit import Actor
from broker.audit.checkpoint import Checkpoint, write_checkpoint
from broker.db.engine import read_transaction, transaction
from broker.errors import Conflict, InvalidInput
from broker.runtime import Runtime
from hsm.store import token_store_dir
from kyso.operations import db_dump
from kyso.operations.backup_format import (
    ANCHORS_FILE,
    BLOBS_DIR,
    FORMAT,
    MANIFEST,
    PKI_DIR,
    SETTINGS_FILE,
    TOKEN_DIR,
    VERSION,
    copy_file,
    digests,
    private_tree,
    sha256,
)

EXCLUDED = ["secrets.json: the PINs are supplied again on restore"]
WITHOUT_DOCUMENTS = ("blobs/: the documents (uploads, signed documents, work files); back up with --with-documents, "
                     "else their requests answer document_gone after a restore")


class BackupTargetNotEmpty(Conflict):
    code = "backup_target_not_empty"


@dataclass(frozen=True)
class BackupResult:
    dest: Path
    manifest: dict[str, Any]


def backup(runtime: Runtime, dest: Path, actor: Actor, *, include_token: bool, include_documents: bool = False,
           sign_checkpoint: Callable[[], Checkpoint | None] | None = None) -> BackupResult:
    """Write a backup directory ``dest`` (new or empty); the blob dir too with ``include_documents``.

    ``sign_checkpoint`` signs the checkpoint the backup starts with: by default with this process's
    token, or through a running server that holds it (the CLI passes its admin socket).
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupTargetNotEmpty(f"{dest} exists and is not an empty directory")
    settings = runtime.settings
    kind = db_dump.kind_of(settings.db_url)
    tokens = token_store_dir(settings.data_dir) / "tokens"
    if include_token and not tokens.is_dir():
        raise InvalidInput(f"no SoftHSM token store in {settings.data_dir} (a network HSM is backed up on its own)")
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    try:
        checkpoint = sign_checkpoint() if sign_checkpoint else write_checkpoint(runtime, actor, "backup")
        if checkpoint is None:
            raise InvalidInput("the audit log is empty: is this data dir initialised?")
        # Anchors before the database: every anchor copied names events the dump will hold.
        copy_file(settings.anchors_path, dest / ANCHORS_FILE)
        db_file = db_dump.dump(settings.db_url, dest)
        if settings.config_path.exists():
            copy_file(settings.config_path, dest / SETTINGS_FILE)
        if include_token:
            shutil.copytree(tokens, dest / TOKEN_DIR)
            private_tree(dest / TOKEN_DIR)
        if settings.pki_dir.is_dir():
            shutil.copytree(settings.pki_dir, dest / PKI_DIR)
            private_tree(dest / PKI_DIR)
        if include_documents:
            # After the database: every file the dump names is copied, unless housekeeping deleted it since.
            if settings.blobs.is_dir():
                _copy_blobs(settings.blobs, dest / BLOBS_DIR)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "versions": _versions(settings.db_url),
            "database": {"kind": kind.value, "file": db_file.name, "alembic_revision": _alembic_revision(runtime)},
            "anchor": checkpoint.anchor,
            "token_included": include_token,
            "token_label": settings.hsm_token_label,
            "pki_included": settings.pki_dir.is_dir(),
            "documents_included": include_documents,
            "blob_dir": str(settings.blobs.resolve()),
            "excluded": EXCLUDED + ([] if include_documents else [WITHOUT_DOCUMENTS]),
            "files": digests(dest),
        }
        manifest_path = dest / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        os.chmod(manifest_path, 0o600)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    with transaction(runtime.sessions) as session:
        audit.record(session, actor, "backup.created", details={
            "dest": str(dest.resolve()), "manifest_sha256": sha256(manifest_path),
            "returns_to_event": checkpoint.head_id, "token_included": include_token,
            "documents_included": include_documents,
        })
    return BackupResult(dest, manifest)


def _copy_blobs(source: Path, target: Path) -> None:
    """Copy the blob dir as it is; a file housekeeping deletes meanwhile is left out, any other error stops."""
    try:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.part"))
    except shutil.Error as exc:
        if any(Path(str(failed[0])).exists() for failed in exc.args[0]):
            raise
    private_tree(target)


def _alembic_revision(runtime: Runtime) -> str | None:
    with read_transaction(runtime.sessions) as session:
        return session.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _versions(db_url: str) -> dict[str, str | None]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "kyso": version("kyso"),
        "python": platform.python_version(),
        "sqlalchemy": version("sqlalchemy"),
        "alembic": version("alembic"),
        "python-pkcs11": version("python-pkcs11"),
        "database": db_dump.server_version(db_url),
    }
