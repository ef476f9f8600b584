"""``kyso restore``: a backup back into a data dir, and a signed record of the audit anchor the chain
returns to. The PINs are supplied again (a backup holds none). A restore that fails leaves the data
dir as it found it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url

from broker.audit import Actor
from broker.audit.anchors import CHECKPOINT, append_anchor, read_anchors
from broker.audit.checkpoint import CHECKPOINT_FIELDS, CHECKPOINT_KIND, Checkpoint, write_checkpoint, write_restored
from broker.audit.key import audit_public_key
from broker.audit.verify import signature_problem
from broker.db.engine import read_transaction, transaction
from broker.db.migrate import upgrade
from broker.db.models import AuditEvent, Document, SigningRequest
from broker.errors import Conflict, InvalidInput, KysoError
from broker.runtime import Runtime
from broker.settings import Settings, load_settings, write_private_json
from hsm import Hsm
from hsm.store import token_store_dir
from kyso.operations import db_dump
from kyso.operations.backup_format import (
    ANCHORS_FILE,
    BLOBS_DIR,
    PKI_DIR,
    SETTINGS_FILE,
    TOKEN_DIR,
    BackupCorrupt,
    copy_file,
    private_tree,
    read_backup,
)


class RestoreTargetNotEmpty(Conflict):
    code = "restore_target_not_empty"


class AuditKeyMismatch(KysoError):
    code = "audit_key_mismatch"


class PinRequired(InvalidInput):
    code = "pin_required"


@dataclass(frozen=True)
class RestoreResult:
    returns_to_event: int
    restored_event: int
    checkpoint_event: int | None
    token_restored: bool
    anchors_moved_to: Path | None
    """A previous anchors file that did not know the backup's anchor, kept aside (never deleted)."""
    documents_restored: bool = False


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
    documents = bool(manifest.get("documents_included"))
    if documents and not force and settings.blobs.is_dir() and any(settings.blobs.iterdir()):
        raise RestoreTargetNotEmpty(f"the blob dir {settings.blobs} is not empty; pass --force to replace it")

    undo = _Undo(data_dir)
    try:
        moved, restored_id, checkpoint = _restore_into(src, settings, manifest, manifest_sha256, actor, undo,
                                                       user_pin, so_pin, include_token, documents, hsm)
    except BaseException:
        undo.roll_back()  # a wrong PIN, a foreign token...: nothing of this restore stays, a retry starts clean
        raise
    undo.done()
    return RestoreResult(int(anchor["head_id"]), restored_id, checkpoint.event_id if checkpoint else None,
                         include_token, moved, documents)


def _restore_into(src: Path, settings: Settings, manifest: dict[str, Any], manifest_sha256: str, actor: Actor,
                  undo: _Undo, user_pin: str, so_pin: str | None, include_token: bool, documents: bool,
                  hsm: Hsm | None) -> tuple[Path | None, int, Checkpoint | None]:
    data_dir, anchor = settings.data_dir, manifest["anchor"]
    undo.make_dir(data_dir)
    os.chmod(data_dir, 0o700)
    store = token_store_dir(data_dir)
    undo.make_dir(store)
    if include_token:
        tokens = store / "tokens"
        undo.set_aside(tokens)
        os.chmod(store, 0o700)
        shutil.copytree(src / TOKEN_DIR, tokens)
        private_tree(tokens)
    undo.set_aside(store / "softhsm2.conf")  # rendered again for this data dir when the token opens

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
            undo.set_aside(settings.config_path)
            copy_file(src / SETTINGS_FILE, settings.config_path)
        undo.set_aside(settings.secrets_path)
        _write_pins(settings, user_pin, so_pin)
        if (src / PKI_DIR).is_dir():  # the same test roots as before: what was signed stays valid
            undo.set_aside(settings.pki_dir)
            shutil.copytree(src / PKI_DIR, settings.pki_dir)
            private_tree(settings.pki_dir)
        if documents:
            _restore_blobs(src / BLOBS_DIR, settings.blobs, undo)
        if db_dump.kind_of(settings.db_url) is db_dump.DatabaseKind.SQLITE:
            database = Path(str(make_url(settings.db_url).database))
            for part in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
                undo.set_aside(part)
        db_dump.load(settings.db_url, src / manifest["database"]["file"])
        upgrade(settings.db_url)
        _check_restored_chain(runtime, anchor)
        _relocate_blobs(runtime, str(manifest.get("blob_dir") or ""), str(settings.blobs.resolve()))
        undo.set_aside(settings.anchors_path, keep_copy=True)
        moved = _merge_anchors(settings.anchors_path, src / ANCHORS_FILE, anchor)
        restored_id = write_restored(runtime, actor, anchor, manifest_sha256)
        checkpoint = write_checkpoint(runtime, actor, "restore")
    finally:
        _close(runtime, owns_hsm=hsm is None)
    return moved, restored_id, checkpoint


def _restore_blobs(source: Path, blobs: Path, undo: _Undo) -> None:
    undo.set_aside(blobs)
    if source.is_dir():
        shutil.copytree(source, blobs)
    else:
        blobs.mkdir(parents=True)
    private_tree(blobs)


def _relocate_blobs(runtime: Runtime, old: str, new: str) -> None:
    """The database names blob files by absolute path: point them at this machine's blob dir."""
    if not old or old == new:
        return
    prefix, target = old.rstrip("/") + "/", new.rstrip("/") + "/"
    with transaction(runtime.sessions) as session:
        for document in session.scalars(select(Document).where(Document.path.startswith(prefix))):
            document.path = target + document.path[len(prefix):]
        for request in session.scalars(select(SigningRequest).where(SigningRequest.payload.is_not(None))):
            text_ = json.dumps(request.payload)
            if prefix in text_:
                request.payload = json.loads(text_.replace(json.dumps(prefix)[1:-1], json.dumps(target)[1:-1]))


class _Undo:
    """What a restore changed in the data dir, to put back if it fails: new paths are removed, replaced
    ones come back from beside them."""

    SUFFIX = ".restore-undo"

    def __init__(self, data_dir: Path) -> None:
        self._created: list[Path] = []
        self._aside: list[tuple[Path, Path | None]] = []
        self._data_dir = data_dir

    def make_dir(self, path: Path) -> None:
        if not path.exists():
            missing = [p for p in (path, *path.parents) if not p.exists()]
            path.mkdir(parents=True)
            self._created.append(missing[-1])

    def set_aside(self, path: Path, *, keep_copy: bool = False) -> None:
        """Move ``path`` aside (or copy it, with ``keep_copy``) before it is replaced."""
        if any(path == p or path.is_relative_to(p) for p in self._created) or \
                any(path == p or path.is_relative_to(p) for p, _ in self._aside):
            return  # already undone as a whole
        if not path.exists() and not path.is_symlink():
            self._aside.append((path, None))
            return
        aside = path.with_name(path.name + self.SUFFIX)
        _remove(aside)
        if keep_copy:
            shutil.copy2(path, aside)
        else:
            path.replace(aside)
        self._aside.append((path, aside))

    def roll_back(self) -> None:
        for path, aside in reversed(self._aside):
            _remove(path)
            if aside is not None and aside.exists():
                aside.replace(path)
        for path in reversed(self._created):
            shutil.rmtree(path, ignore_errors=True)

    def done(self) -> None:
        for _, aside in self._aside:
            if aside is not None:
                _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
