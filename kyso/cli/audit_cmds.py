"""``kyso audit ...``."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from broker import audit
from broker.admin_socket import AdminClient
from broker.audit import checkpoint as audit_checkpoint
from broker.audit import cli_actor
from broker.audit import export as audit_export
from broker.audit import key as audit_key
from broker.audit import verify as audit_verify
from broker.db.engine import read_transaction, transaction
from broker.errors import InvalidInput
from kyso.cli.context import state
from kyso.cli.output import JSON_OPTION, console, print_json, table

audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


@audit_app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", min=1),
    action: Optional[str] = typer.Option(None, "--action"),  # noqa: UP007
    as_json: bool = JSON_OPTION,
) -> None:
    """The newest audit events, oldest first."""
    if as_json:
        with read_transaction(state(ctx).runtime().sessions) as session:
            events = [{"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "outcome": e.outcome,
                       "target_type": e.target_type, "target_id": e.target_id, "details": e.details,
                       "hash": e.hash.hex()} for e in audit.list_events(session, limit, action)]
        print_json(events)
        return
    with transaction(state(ctx).runtime().sessions) as session:
        rows = [
            (
                e.id,
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.actor,
                e.action,
                e.outcome,
                f"{e.target_type}:{e.target_id}" if e.target_type else "",
                json.dumps(e.details, ensure_ascii=False),
            )
            for e in audit.list_events(session, limit, action)
        ]
    table(["#", "at (UTC)", "actor", "action", "outcome", "target", "details"], rows)


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    file: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--file", help="Verify an export offline (no database, no HSM)."),
    key: Optional[Path] = typer.Option(None, "--key", help="The audit public key (PEM) to trust, "  # noqa: UP007
                                       "instead of the HSM's (or the export's own)."),
) -> None:
    """Check the hash chain, every signed checkpoint and the anchors file; exit 1 at a problem."""
    pinned = _load_key(key) if key else None
    if file is not None:
        if not file.is_file():
            raise InvalidInput(f"no such file: {file}")
        report = audit_export.verify_export(file, pinned)
        subject = f"export {file.name}"
    else:
        runtime = state(ctx).runtime()
        public = pinned or _audit_public_key(ctx)
        with read_transaction(runtime.sessions) as session:
            report = audit_verify.verify_database(session, runtime.settings.anchors_path, public)
        subject = "audit chain"
    _print_report(subject, report)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def checkpoint(ctx: typer.Context) -> None:
    """Sign the chain head now with the HSM's audit key; append it to the anchors file."""
    server = state(ctx).server()
    if server is not None:  # the running server holds the token
        done = server.call("POST", "/audit/checkpoints")
        if done["event_id"] is None:
            console.print("the audit log is empty: nothing to sign")
            return
        console.print(f"checkpoint {done['event_id']}: head event {done['head_id']} ({done['head_hash'][:16]}…) signed, "
                      f"anchor appended to {done['anchors_path']} (through the running server)", markup=False)
        return
    runtime = state(ctx).runtime()
    made = audit_checkpoint.write_checkpoint(runtime, cli_actor(), "manual")
    if made is None:
        console.print("the audit log is empty: nothing to sign")
        return
    console.print(f"checkpoint {made.event_id}: head event {made.head_id} ({made.head_hash.hex()[:16]}…) signed, "
                  f"anchor appended to {runtime.settings.anchors_path}", markup=False)


@audit_app.command("export")
def export(
    ctx: typer.Context,
    since: Optional[str] = typer.Option(  # noqa: UP007
        None, "--since", help="ISO 8601 time, inclusive (UTC when no zone)."),
    until: Optional[str] = typer.Option(  # noqa: UP007
        None, "--until", help="ISO 8601 time, exclusive (UTC when no zone)."),
    out: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--out", "-o", help="Write here instead of standard output."),
) -> None:
    """Events of a time range as JSON lines, with the anchors and a signed trailer, for an offline audit."""
    start, end = _parse_time(since, "--since"), _parse_time(until, "--until")
    server = state(ctx).server()
    if server is not None:  # the running server signs the trailer with the token it holds
        summary = _export_through(server, out, start, end)
        if summary is None:
            return
    else:
        runtime = state(ctx).runtime()
        if out is None:
            audit_export.export(runtime.sessions, runtime.hsm, runtime.settings.anchors_path, sys.stdout, start, end)
            return
        tmp = out.with_name(out.name + ".part")
        with tmp.open("w", encoding="utf-8") as fh:
            summary = audit_export.export(runtime.sessions, runtime.hsm, runtime.settings.anchors_path, fh, start, end)
        tmp.replace(out)
    span = f"events {summary.first_id}–{summary.last_id}" if summary.count else "no events"
    console.print(f"exported {span} ({summary.count}), {summary.anchors} anchors → {out}; "
                  f"audit key {summary.key_fingerprint}", markup=False)


def _audit_public_key(ctx: typer.Context) -> audit_key.AuditPublicKey | None:
    server = state(ctx).server()
    if server is None:
        return audit_key.audit_public_key(state(ctx).runtime().hsm)
    pem_text = server.call("GET", "/audit/public-key")["pem"]
    return audit_key.AuditPublicKey.from_pem(pem_text) if pem_text else None


def _export_through(server: AdminClient, out: Path | None, start: datetime | None,
                    end: datetime | None) -> audit_export.ExportSummary | None:
    """The server writes the export to a file of the CLI's (a private temporary one for stdout)."""
    times = {"since": start.isoformat() if start else None, "until": end.isoformat() if end else None}
    if out is not None:
        return audit_export.ExportSummary(**server.call("POST", "/audit/exports", {"output_path": str(out.resolve()), **times}))
    with tempfile.TemporaryDirectory(prefix="kyso-export-") as tmp:
        path = Path(tmp) / "export.jsonl"
        server.call("POST", "/audit/exports", {"output_path": str(path), **times})
        with path.open(encoding="utf-8") as fh:
            shutil.copyfileobj(fh, sys.stdout)
    return None


def _print_report(subject: str, report: audit_verify.Report) -> None:
    if report.ok:
        span = f"events {report.first_id}–{report.last_id}" if report.events else "no events"
        parts = [f"{report.signed_events} signed checkpoints/restores"]
        if report.anchors:
            parts.append(f"{report.anchors} anchors, the newest (event {report.newest_anchor_head}) matches")
        if report.superseded_anchors:
            parts.append(f"{report.superseded_anchors} anchors superseded by {report.restores} restore(s)")
        if report.key_fingerprint:
            parts.append(f"audit key {report.key_fingerprint}")
        console.print(f"{subject} intact: {span}; " + "; ".join(parts), markup=False)
        return
    problems = report.sorted_problems()
    console.print(f"{subject} BROKEN {problems[0]}", markup=False)
    for problem in problems[1:20]:
        console.print(f"  also {problem}", markup=False)
    if len(problems) > 20:
        console.print(f"  … and {len(problems) - 20} more", markup=False)


def _load_key(path: Path) -> audit_key.AuditPublicKey:
    try:
        return audit_key.AuditPublicKey.from_pem(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a PEM public key") from exc


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{option}: not an ISO 8601 time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
