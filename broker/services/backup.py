"""``kyso backup`` and ``kyso restore``: the database, the settings file and the audit anchors.

Never ``secrets.json`` (the PINs are supplied again on restore) and never a private key in the
clear: the SoftHSM token store is copied only on request, and its keys stay encrypted under the
token's PINs. A backup starts with a signed audit checkpoint, the anchor a restore returns to.
"""

from __future__ import annotations

import hashlib
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

from pydantic import SecretStr
from sqlalchemy import select, text

from broker import audit
from broker.audit import Actor
from broker.audit_anchors import CHECKPOINT, append_anchor, read_anchors
from broker.audit_checkpoint import CHECKPOINT_FIELDS, CHECKPOINT_KIND, Checkpoint, write_checkpoint, write_restored
from broker.audit_key import audit_public_key
from broker.audit_verify import signature_problem
from broker.db.engine import read_transaction, transaction
from broker.db.migrate import upgrade
from broker.db.models import AuditEvent
from broker.errors import Conflict, InvalidInput, KysoError
from broker.runtime import Runtime
from broker.services import db_dump
from broker.settings import Settings, load_settings, write_private_json
from hsm import Hsm
from hsm.store import token_store_dir

FORMAT = "kyso-backup"
VERSION = 1
MANIFEST = "manifest.json"
SETTINGS_FILE = "kyso.toml"
ANCHORS_FILE = "audit-anchors.jsonl"
TOKEN_DIR = "token"
EXCLUDED = [
    "secrets.json: the PINs are supplied again on restore",
    "pki/: the test CA emulators' keys, in the clear",
    "blobs/: documents in transit; back up KYSO_BLOB_DIR's shared storage on its own",
]


class BackupTargetNotEmpty(Conflict):
    code = "backup_target_not_empty"


class RestoreTargetNotEmpty(Conflict):
    code = "restore_target_not_empty"


class BackupCorrupt(KysoError):
    code = "backup_corrupt"


class AuditKeyMismatch(KysoError):
    code = "audit_key_mismatch"


@dataclass(frozen=True)
class BackupResult:
    dest: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class RestoreResult:
    returns_to_event: int
    restored_event: int
    checkpoint_event: int | None
    token_restored: bool
    anchors_moved_to: Path | None
    """A previous anchors file that did not know the backup's anchor, kept aside (never deleted)."""


# -- backup ---------------------------------------------------------------------------------------


def backup(runtime: Runtime, dest: Path, actor: Actor, *, include_token: bool,
           sign_checkpoint: Callable[[], Checkpoint | None] | None = None) -> BackupResult:
    """Write a backup directory ``dest`` (new or empty).

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
        _copy_file(settings.anchors_path, dest / ANCHORS_FILE)
        db_file = db_dump.dump(settings.db_url, dest)
        if settings.config_path.exists():
            _copy_file(settings.config_path, dest / SETTINGS_FILE)
        if include_token:
            shutil.copytree(tokens, dest / TOKEN_DIR)
            _private_tree(dest / TOKEN_DIR)
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
            "excluded": EXCLUDED,
            "files": _digests(dest),
        }
        manifest_path = dest / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        os.chmod(manifest_path, 0o600)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    with transaction(runtime.sessions) as session:
        audit.record(session, actor, "backup.created", details={
            "dest": str(dest.resolve()), "manifest_sha256": _sha256(manifest_path),
            "returns_to_event": checkpoint.head_id, "token_included": include_token,
        })
    return BackupResult(dest, manifest)


# -- restore --------------------------------------------------------------------------------------


def read_backup(src: Path) -> tuple[dict[str, Any], str]:
    """The manifest and its SHA-256, after checking every file against it."""
    manifest_path = src / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise BackupCorrupt(f"{src} has no readable {MANIFEST}") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupCorrupt(f"{src} is not a kyso backup of version {VERSION}")
    files = manifest.get("files") or {}
    actual = _digests(src)
    for name, expected in files.items():
        if name not in actual:
            raise BackupCorrupt(f"{name} is missing from the backup")
        if actual[name]["sha256"] != expected.get("sha256"):
            raise BackupCorrupt(f"{name} does not match its SHA-256 in the manifest")
    extra = sorted(set(actual) - set(files))
    if extra:
        raise BackupCorrupt(f"files not in the manifest: {', '.join(extra[:5])}")
    try:
        db_dump.DatabaseKind(manifest["database"]["kind"])
        str(manifest["database"]["file"])
        int(manifest["anchor"]["head_id"]), int(manifest["anchor"]["event_id"])
    except (KeyError, TypeError, ValueError):
        raise BackupCorrupt(f"{src}/{MANIFEST} lacks the database or the audit anchor") from None
    return manifest, _sha256(manifest_path)


def restore(src: Path, data_dir: Path, actor: Actor, *, user_pin: str, so_pin: str | None = None,
            include_token: bool = False, force: bool = False, hsm: Hsm | None = None) -> RestoreResult:
    """Restore ``src`` into ``data_dir`` and record, signed, the anchor the audit chain returns to.

    ``hsm`` lets a caller that already holds this data dir's token pass it in (one token store per process).
    """
    manifest, manifest_sha256 = read_backup(src)
    if include_token and not manifest.get("token_included"):
        raise InvalidInput("this backup holds no token store; restore without --include-token")
    settings = _target_settings(src, data_dir, user_pin, so_pin)
    kind = db_dump.DatabaseKind(manifest["database"]["kind"])
    if db_dump.kind_of(settings.db_url) is not kind:
        raise InvalidInput(f"the backup holds a {kind.value} database but the target's database URL is "
                           f"{db_dump.kind_of(settings.db_url).value} (set KYSO_DATABASE_URL)")
    if not force:
        _refuse_non_empty(settings)
    has_store = any((token_store_dir(data_dir) / "tokens").glob("*"))
    if not include_token and not has_store and "softhsm" in settings.hsm_module.lower():
        raise InvalidInput(f"{data_dir} has no SoftHSM token store: restore with --include-token"
                           + ("" if manifest.get("token_included") else " from a backup that holds one"))
    anchor = manifest["anchor"]

    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    if include_token:
        tokens = token_store_dir(data_dir) / "tokens"
        shutil.rmtree(tokens, ignore_errors=True)
        tokens.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tokens.parent, 0o700)
        shutil.copytree(src / TOKEN_DIR, tokens)
        _private_tree(tokens)

    runtime = Runtime(settings, hsm=hsm)
    try:
        # The token, the PIN and the audit key first: on any doubt, stop before the database is touched.
        key = audit_public_key(runtime.hsm)
        if key is None or key.fingerprint != anchor.get("key_fingerprint"):
            raise AuditKeyMismatch("the token's audit key is not the one that signed the backup's checkpoint; "
                                   "restore the token with --include-token or use the original HSM")
        if signature_problem(key, CHECKPOINT_KIND, CHECKPOINT_FIELDS, anchor):
            raise BackupCorrupt("the backup's checkpoint is not signed by the audit key")
        if (src / SETTINGS_FILE).exists():
            _copy_file(src / SETTINGS_FILE, settings.config_path)
        _write_pins(settings, user_pin, so_pin)
        db_dump.load(settings.db_url, src / manifest["database"]["file"])
        upgrade(settings.db_url)
        _check_restored_chain(runtime, anchor)
        moved = _merge_anchors(settings.anchors_path, src / ANCHORS_FILE, anchor)
        restored_id = write_restored(runtime, actor, anchor, manifest_sha256)
        checkpoint = write_checkpoint(runtime, actor, "restore")
    finally:
        _close(runtime, owns_hsm=hsm is None)
    return RestoreResult(int(anchor["head_id"]), restored_id, checkpoint.event_id if checkpoint else None,
                         include_token, moved)


def _target_settings(src: Path, data_dir: Path, user_pin: str, so_pin: str | None) -> Settings:
    """The backup's kyso.toml under this machine's KYSO_* environment, placed in ``data_dir``."""
    overrides: dict[str, Any] = {"hsm_user_pin": SecretStr(user_pin)}
    if so_pin:
        overrides["hsm_so_pin"] = SecretStr(so_pin)
    loaded = load_settings(src, **overrides)  # reads src/kyso.toml; src has no secrets.json
    return loaded.model_copy(update={"data_dir": data_dir})


def _refuse_non_empty(settings: Settings) -> None:
    data_dir = settings.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreTargetNotEmpty(f"{data_dir} is not empty; restore into an empty directory or pass --force")
    if not db_dump.is_empty(settings.db_url):
        raise RestoreTargetNotEmpty("the target database is not empty; pass --force to replace it")


def _write_pins(settings: Settings, user_pin: str, so_pin: str | None) -> None:
    path = settings.secrets_path
    current: dict[str, str] = {}
    if path.exists():
        try:
            current = {k: str(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, json.JSONDecodeError, AttributeError):
            current = {}
    current["hsm_user_pin"] = user_pin
    if so_pin:
        current["hsm_so_pin"] = so_pin
    write_private_json(path, current)


def _check_restored_chain(runtime: Runtime, anchor: dict[str, Any]) -> None:
    """The restored database must hold the events the backup's anchor signed."""
    with read_transaction(runtime.sessions) as session:
        for event_id, expected in ((anchor["head_id"], anchor["head_hash"]),
                                   (anchor["event_id"], anchor["event_hash"])):
            actual = session.scalar(select(AuditEvent.hash).where(AuditEvent.id == int(event_id)))
            if actual is None or actual.hex() != expected:
                raise BackupCorrupt(f"the restored audit chain does not hold event {event_id} "
                                    "as the backup's anchor says")


def _merge_anchors(target: Path, backed_up: Path, anchor: dict[str, Any]) -> Path | None:
    """Keep the target's anchors when they know the backup's anchor (the later ones are superseded by
    the restored line); otherwise set the backup's file in place, moving the old one aside."""
    if target.exists() and _holds(target, anchor):
        return None
    moved = None
    if target.exists() and target.stat().st_size:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        moved = target.with_name(f"{target.name}.before-restore-{stamp}")
        target.replace(moved)
    target.unlink(missing_ok=True)
    for line in read_anchors(backed_up):
        if line.record is not None:
            append_anchor(target, line.record)
    return moved


def _holds(path: Path, anchor: dict[str, Any]) -> bool:
    return any(line.record is not None and line.record.get("type") == CHECKPOINT
               and line.record.get("event_id") == anchor["event_id"]
               and line.record.get("event_hash") == anchor["event_hash"]
               and line.record.get("signature") == anchor["signature"]
               for line in read_anchors(path))


def _close(runtime: Runtime, *, owns_hsm: bool) -> None:
    if owns_hsm:
        runtime.close()
        return
    runtime.notifier.close()
    if "engine" in runtime.__dict__:
        runtime.engine.dispose()


# -- files ----------------------------------------------------------------------------------------


def _copy_file(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o600)
    tmp.replace(target)


def _private_tree(root: Path) -> None:
    os.chmod(root, 0o700)
    for path in root.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def _digests(root: Path) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(root).as_posix(): {"sha256": _sha256(path), "size": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path != root / MANIFEST
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
