"""``kyso backup``, ``kyso restore`` and ``kyso housekeeping``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from broker.audit import cli_actor
from broker.audit.checkpoint import Checkpoint
from broker.errors import PolicyViolation
from broker.lifecycle import housekeeping as housekeeping_service
from kyso.cli.context import state
from kyso.cli.output import console
from kyso.operations import backup as backup_service
from kyso.operations import restore as restore_service


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.command("housekeeping")(housekeeping)


def backup(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="A new or empty directory to write the backup into."),
    include_token: bool = typer.Option(False, "--include-token", help="Also copy the SoftHSM token store."),
    with_documents: bool = typer.Option(False, "--with-documents",
                                        help="Also copy the blob dir: uploads, signed documents, work files."),
) -> None:
    """Back up the database, kyso.toml, the audit anchors and the test PKI (never secrets.json), after a
    signed checkpoint; the documents with --with-documents."""
    runtime = state(ctx).runtime()
    server = state(ctx).server()
    def through_server() -> Checkpoint | None:  # the running server holds the token: it signs
        assert server is not None
        made = server.call("POST", "/audit/checkpoints", {"reason": "backup"})
        if made["event_id"] is None:
            return None
        return Checkpoint(made["event_id"], made["head_id"], bytes.fromhex(made["head_hash"]), made["anchor"])

    result = backup_service.backup(runtime, dest, cli_actor(), include_token=include_token,
                                   include_documents=with_documents, sign_checkpoint=through_server if server is not None else None)
    manifest = result.manifest
    top = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in manifest["files"]})
    console.print(f"backup written to {dest}: {', '.join(top)}, manifest.json (SHA-256 of each file)", markup=False)
    console.print(f"database {manifest['database']['kind']}; audit checkpoint at event {manifest['anchor']['head_id']}",
                  markup=False)
    if include_token:
        console.print("the token store is included: its keys are protected by the token's PINs, which are not in "
                      "the backup; keep the PINs apart from it", markup=False)
    if with_documents:
        console.print("documents included (blobs/: uploads, signed documents, work files)", markup=False)
    else:
        console.print("documents are not included: after a restore their requests answer document_gone "
                      "(back up with --with-documents to keep them)", markup=False)
    console.print("not included: secrets.json (PINs are supplied again on restore)", markup=False)


def restore(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="A backup directory written by 'kyso backup'."),
    include_token: bool = typer.Option(False, "--include-token", help="Also restore the token store in the backup."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty data dir or database."),
    pin_file: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional
        None, "--pin-file", help="Read the HSM user PIN from this file (first line)."),
) -> None:
    """Restore a backup into the data dir (stop the server first); the HSM user PIN comes from --pin-file,
    KYSO_HSM_USER_PIN or a prompt on a terminal. Records, signed, the audit checkpoint the chain returns to."""
    data_dir = state(ctx).data_dir
    if state(ctx).server() is not None:
        raise PolicyViolation(f"a kyso server is running on {data_dir}: stop it before a restore")
    user_pin = _user_pin(pin_file)
    so_pin = os.environ.get("KYSO_HSM_SO_PIN")
    result = restore_service.restore(src, data_dir, cli_actor(), user_pin=user_pin, so_pin=so_pin,
                                    include_token=include_token, force=force)
    console.print(f"restored {src} into {data_dir}" + (" with its token store" if result.token_restored else ""),
                  markup=False)
    console.print("documents restored" if result.documents_restored else
                  "the backup holds no documents: signed documents and uploads answer document_gone", markup=False)
    console.print(f"the audit chain returns to the checkpoint of event {result.returns_to_event}; "
                  f"restore recorded as event {result.restored_event}, signed", markup=False)
    if result.anchors_moved_to is not None:
        console.print(f"the previous anchors file did not know that checkpoint: kept as {result.anchors_moved_to}",
                      markup=False)


def _user_pin(pin_file: Path | None) -> str:
    """--pin-file, else KYSO_HSM_USER_PIN, else a prompt: only on a terminal (no echo to fall back on)."""
    if pin_file is not None:
        try:
            pin = pin_file.read_text().splitlines()[0].strip() if pin_file.stat().st_size else ""
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            raise restore_service.PinRequired(f"cannot read the PIN file {str(pin_file)[:200]}") from exc
        if not pin:
            raise restore_service.PinRequired(f"the PIN file {str(pin_file)[:200]} is empty")
        return pin
    pin = os.environ.get("KYSO_HSM_USER_PIN")
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise restore_service.PinRequired("the HSM user PIN is needed: pass --pin-file or set KYSO_HSM_USER_PIN "
                                         "(no terminal to ask on)")
    return str(typer.prompt("HSM user PIN", hide_input=True))


def housekeeping(ctx: typer.Context) -> None:
    """Delete the work files of requests that ended unsigned, and documents past KYSO_DOCUMENT_RETENTION_DAYS
    (audited as document.delete). The signing worker also runs it every few minutes."""
    runtime = state(ctx).runtime()
    swept = housekeeping_service.sweep(runtime.sessions, runtime.settings, cli_actor())
    console.print(f"work files of {swept.unsigned} request(s) that ended unsigned, signed documents of "
                  f"{swept.signed} request(s) and {swept.uploads} upload(s) past {runtime.settings.document_retention_days} "
                  f"days deleted: {swept.files} file(s), {swept.bytes} bytes; {swept.expired} overdue request(s) expired",
                  markup=False)
