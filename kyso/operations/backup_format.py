"""A backup directory: its file names and manifest, checked on reading, and the file helpers
backup and restore share."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from broker.errors import KysoError
from kyso.operations import db_dump

FORMAT = "kyso-backup"
VERSION = 1
MANIFEST = "manifest.json"
SETTINGS_FILE = "kyso.toml"
ANCHORS_FILE = "audit-anchors.jsonl"
TOKEN_DIR = "token"
PKI_DIR = "pki"
BLOBS_DIR = "blobs"


class BackupCorrupt(KysoError):
    code = "backup_corrupt"


def read_backup(src: Path) -> tuple[dict[str, Any], str]:
    """The manifest and its SHA-256, after checking every file against it."""
    manifest_path = src / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BackupCorrupt(f"{src} has no readable {MANIFEST}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupCorrupt(f"{src} is not a kyso backup of version {VERSION}")
    files = manifest.get("files") or {}
    actual = digests(src)
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
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupCorrupt(f"{src}/{MANIFEST} lacks the database or the audit anchor") from exc
    return manifest, sha256(manifest_path)


def copy_file(source: Path, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o600)
    tmp.replace(target)


def private_tree(root: Path) -> None:
    os.chmod(root, 0o700)
    for path in root.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def digests(root: Path) -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(root).as_posix(): {"sha256": sha256(path), "size": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path != root / MANIFEST
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
