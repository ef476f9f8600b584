"""``kyso backup`` and ``kyso restore``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from broker.audit import cli_actor
from broker.audit_checkpoint import Checkpoint
from broker.cli.context import state
from broker.cli.output import console
from broker.errors import PolicyViolation
from broker.services import backup as backup_service


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="A new or empty directory to write the backup into."),
    include_token: bool = typer.Option(False, "--include-token", help="Also copy the SoftHSM token store."),
) -> None:
    """Back up the database, kyso.toml and the audit anchors (never secrets.json), after a signed checkpoint."""
    runtime = state(ctx).runtime()
    server = state(ctx).server()
    def through_server() -> Checkpoint | None:  # the running server holds the token: it signs
        assert server is not None
        made = server.call("POST", "/audit/checkpoints", {"reason": "backup"})
        if made["event_id"] is None:
            return None
        return Checkpoint(made["event_id"], made["head_id"], bytes.fromhex(made["head_hash"]), made["anchor"])

    result = backup_service.backup(runtime, dest, cli_actor(), include_token=include_token,
                                   sign_checkpoint=through_server if server is not None else None)
    manifest = result.manifest
    top = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in manifest["files"]})
    console.print(f"backup written to {dest}: {', '.join(top)}, manifest.json (SHA-256 of each file)", markup=False)
    console.print(f"database {manifest['database']['kind']}; audit checkpoint at event {manifest['anchor']['head_id']}",
                  markup=False)
    if include_token:
        console.print("the token store is included: its keys are protected by the token's PINs, which are not in "
                      "the backup; keep the PINs apart from it", markup=False)
    console.print("not included: secrets.json (PINs are supplied again on restore)", markup=False)


def restore(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="A backup directory written by 'kyso backup'."),
    include_token: bool = typer.Option(False, "--include-token", help="Also restore the token store in the backup."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty data dir or database."),
) -> None:
    """Restore a backup into the data dir (stop the server first); the HSM user PIN comes from
    KYSO_HSM_USER_PIN or a prompt. Records, signed, the audit checkpoint the chain returns to."""
    data_dir = state(ctx).data_dir
    if state(ctx).server() is not None:
        raise PolicyViolation(f"a kyso server is running on {data_dir}: stop it before a restore")
    user_pin = os.environ.get("KYSO_HSM_USER_PIN") or typer.prompt("HSM user PIN", hide_input=True)
    so_pin = os.environ.get("KYSO_HSM_SO_PIN")
    result = backup_service.restore(src, data_dir, cli_actor(), user_pin=user_pin, so_pin=so_pin,
                                    include_token=include_token, force=force)
    console.print(f"restored {src} into {data_dir}" + (" with its token store" if result.token_restored else ""),
                  markup=False)
    console.print(f"the audit chain returns to the checkpoint of event {result.returns_to_event}; "
                  f"restore recorded as event {result.restored_event}, signed", markup=False)
    if result.anchors_moved_to is not None:
        console.print(f"the previous anchors file did not know that checkpoint: kept as {result.anchors_moved_to}",
                      markup=False)
