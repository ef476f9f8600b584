"""``kyso cert ...``: enrollment with a provider, listing, revocation, trust anchors."""

from __future__ import annotations

import base64
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import typer
from asn1crypto import pem

from broker import credentials
from broker.audit import cli_actor
from broker.credentials import delegated
from broker.db.engine import read_transaction, transaction
from broker.db.models import Credential
from broker.errors import InvalidInput
from ca_adapters import RevocationReason, provider_names
from ca_adapters.remote_clients.misa import MisaClient
from kyso.cli import ids, onboarding_cmds
from kyso.cli.context import state
from kyso.cli.output import JSON_OPTION, console, print_json, table
from kyso.operations import onboarding

cert_app = typer.Typer(help="Certificates and the HSM keys behind them.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cert_app, name="cert")


@cert_app.command("enroll")
def enroll(
    ctx: typer.Context,
    user: Optional[str] = typer.Option(None, "--user", help="Username."),  # noqa: UP007
    ca: Optional[str] = typer.Option(None, "--ca", help=f"Provider: {', '.join(provider_names())}."),  # noqa: UP007
    key: str = typer.Option("rsa-2048", "--key", help="rsa-2048, rsa-3072, ec-p256 or ec-p384."),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="rsa-pkcs1v15 (default for RSA), rsa-pss or ecdsa."),  # noqa: UP007
    from_file: Optional[Path] = typer.Option(  # noqa: UP007
        None, "--from", help="Enroll for every row of a CSV file (UTF-8, header: username,ca[,key][,scheme]) "
                             "instead of --user/--ca; rows already enrolled are skipped."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --from: check every row; enroll nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --from: print the report as JSON."),
) -> None:
    """Make a key in the HSM, have the provider certify it, store the chain."""
    if from_file is not None:
        if user is not None or ca is not None:
            raise InvalidInput("--from reads the users and providers from the file: leave out --user and --ca")
        _enroll_from(ctx, from_file, dry_run, as_json)
        return
    if user is None or ca is None:
        raise InvalidInput("name --user and --ca (or --from FILE.csv)")
    if dry_run:
        raise InvalidInput("--dry-run goes with --from")
    _enroll_one(ctx, user, ca, key, scheme, quiet=False)


def _enroll_one(ctx: typer.Context, user: str, ca: str, key: str, scheme: str | None, *, quiet: bool) -> str:
    algorithm = credentials.parse_key_algorithm(key)
    chosen = credentials.parse_scheme(scheme, algorithm) if scheme else None
    server = state(ctx).server()
    if server is not None:  # the running server holds the token
        made = server.call("POST", "/credentials", {"user": user, "ca": ca, "key": key, "scheme": scheme})
        if not quiet:
            console.print(f"credential {made['id']} enrolled for {user}: {made['subject']}", markup=False)
            console.print(f"  {made['provider_name']}, {made['key_algorithm']}, serial {made['serial_hex']} "
                          "(through the running server)", markup=False)
        return str(made["id"])
    runtime = state(ctx).runtime()
    adapter = runtime.ca(ca)
    with transaction(runtime.sessions) as session:
        credential = credentials.enroll(
            session, cli_actor(), runtime.hsm, adapter, username=user, key_algorithm=algorithm, scheme=chosen
        )
        if not quiet:
            console.print(f"credential {credential.id} enrolled for {user}: {credential.subject}")
            console.print(f"  {adapter.profile.display_name}, {credential.key_algorithm}, serial {credential.serial_hex}")
        return credential.id


def _enroll_from(ctx: typer.Context, file: Path, dry_run: bool, as_json: bool) -> None:
    rows = onboarding.read_rows(file, onboarding.CERTIFICATE_REQUIRED, onboarding.CERTIFICATE_COLUMNS)
    runtime = state(ctx).runtime()

    def enroll_row(user: str, ca: str, key: str, scheme: str | None) -> str:
        return _enroll_one(ctx, user, ca, key, scheme, quiet=True)

    with onboarding_cmds.progress(len(rows), "certificates") as advance:
        report = onboarding.enroll_certificates(onboarding_cmds.batch(runtime, file, dry_run, advance), rows,
                                                onboarding_cmds.ROW_ERRORS, enroll_row, provider_names())
    onboarding_cmds.finish(report, "user/provider", dry_run, as_json)


@cert_app.command("link")
def link(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", help="Username in kyso."),
    ca: str = typer.Option(..., "--ca", help=f"Provider: {', '.join(provider_names())}."),
    provider_user: str = typer.Option(..., "--provider-user", help="The signer's id at the provider (CCCD, MST...)."),
    serial: str = typer.Option("", "--serial", help="Certificate serial (hex); Nacencomm names certificates by serial."),
    password: Optional[str] = typer.Option(None, "--password", envvar="KYSO_PROVIDER_PASSWORD",  # noqa: UP007
                                           help="MISA: the signer's password (else asked)."),
    otp: Optional[str] = typer.Option(None, "--otp", help="MISA: the second-factor code the signer received."),  # noqa: UP007
) -> None:
    """Link a certificate whose key stays at the provider (delegated mode): the signer confirms in the provider's app."""
    runtime = state(ctx).runtime()
    adapter = runtime.ca(ca)
    client = adapter.remote_signing()
    try:
        if isinstance(client, MisaClient):
            client.login(provider_user, password or typer.prompt("MISA password", hide_input=True),
                         otp or typer.prompt("MISA second-factor code"))
        with transaction(runtime.sessions) as session:
            credential = delegated.link(session, cli_actor(), adapter, client, username=user,
                                        provider_user_id=provider_user, serial_hex=serial)
            console.print(f"credential {credential.id} linked for {user}: {credential.subject}")
            console.print(f"  {adapter.profile.display_name}, delegated (key at the provider), serial {credential.serial_hex}")
    finally:
        client.close()


def credential_view(c: Credential) -> dict[str, object]:
    return {"id": c.id, "user": c.user.username, "provider": c.provider, "mode": c.mode.value,
            "key_algorithm": c.key_algorithm, "signature_scheme": c.signature_scheme, "status": c.status.value,
            "serial_hex": c.serial_hex, "subject": c.subject, "not_before": c.not_before, "not_after": c.not_after,
            "created_at": c.created_at, "revoked_at": c.revoked_at}


@cert_app.command("list")
def list_(ctx: typer.Context, user: Optional[str] = typer.Option(None, "--user"),  # noqa: UP007
          as_json: bool = JSON_OPTION) -> None:
    """List credentials."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        views = [credential_view(c) for c in credentials.list_credentials(session, user)]
    if as_json:
        print_json(views)
        return
    table(["credential", "user", "provider", "mode", "key", "status", "valid until"],
          [(v["id"], v["user"], v["provider"], v["mode"], v["key_algorithm"], v["status"],
            v["not_after"].date()) for v in views], ids=[0])  # type: ignore[attr-defined]


@cert_app.command("show")
def show(
    ctx: typer.Context,
    credential_id: str = typer.Argument(..., help="The id, or a unique prefix of it."),
    as_pem: bool = typer.Option(False, "--pem", help="Print the certificate and chain as PEM."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a credential's certificate."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        c = credentials.get_credential(session, ids.credential_id(session, credential_id))
        if as_pem:
            for der in [c.certificate, *(base64.b64decode(x) for x in c.chain)]:
                console.print(pem.armor("CERTIFICATE", der).decode(), end="", multiline=True)
            return
        cert, chain = credentials.certificate_chain(c)
        view = {**credential_view(c), "issuer": cert.issuer.human_friendly,
                "chain": [x.subject.native.get("common_name", "?") for x in chain]}
        rows = [
            ("credential", c.id),
            ("user", c.user.username),
            ("provider", c.provider),
            ("status", c.status.value),
            ("key", f"{c.key_algorithm} ({c.signature_scheme})"),
            ("subject", cert.subject.human_friendly),
            ("issuer", cert.issuer.human_friendly),
            ("serial", c.serial_hex),
            ("valid", f"{cert.not_valid_before} → {cert.not_valid_after}"),
            ("chain", " ← ".join(x.subject.native.get("common_name", "?") for x in chain)),
        ]
    if as_json:
        print_json(view)
        return
    table(["field", "value"], rows)


@cert_app.command("revoke")
def revoke(
    ctx: typer.Context,
    credential_id: str = typer.Argument(..., help="The id, or a unique prefix of it."),
    reason: RevocationReason = typer.Option(RevocationReason.UNSPECIFIED, "--reason"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Revoke a credential's certificate at its provider; it never signs again."""
    runtime = state(ctx).runtime()
    with read_transaction(runtime.sessions) as session:
        c = credentials.get_credential(session, ids.credential_id(session, credential_id))
        full_id, described = c.id, f"credential {c.id} of {c.user.username} ({c.provider}, serial {c.serial_hex})"
    if not yes:
        if not sys.stdin.isatty():
            raise ConfirmationRequired(f"revoking {described} cannot be undone: pass --yes "
                                       "(no terminal to ask on)")
        console.print(f"revoke {described} at its provider ({reason.value})? It never signs again.")
        if not typer.confirm("revoke", default=False):
            console.print("not revoked")
            raise typer.Exit(1)
    with transaction(runtime.sessions) as session:
        credentials.revoke(session, cli_actor(), runtime.ca(c.provider), full_id, reason)
        console.print(f"credential {full_id} revoked ({reason.value})")


class ConfirmationRequired(InvalidInput):
    code = "confirmation_required"


@cert_app.command("renew")
def renew(ctx: typer.Context, credential_id: str = typer.Argument(..., help="The id, or a unique prefix of it.")) -> None:
    """A new HSM key and certificate from the same provider; the old certificate revoked as superseded."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        credential_id = ids.credential_id(session, credential_id)
    server = state(ctx).server()
    if server is not None:  # the running server holds the token
        made = server.call("POST", f"/credentials/{quote(credential_id, safe='')}/renew")
        console.print(f"credential {made['id']} replaces {credential_id} (revoked: superseded)", markup=False)
        console.print(f"  serial {made['serial_hex']}, valid until {made['not_after'][:10]}", markup=False)
        return
    runtime = state(ctx).runtime()
    with transaction(runtime.sessions) as session:
        old = credentials.get_credential(session, credential_id)
        new = credentials.renew(session, cli_actor(), runtime.hsm, runtime.ca(old.provider), credential_id)
        console.print(f"credential {new.id} replaces {credential_id} (revoked: superseded)")
        console.print(f"  serial {new.serial_hex}, valid until {new.not_after.date()}")


@cert_app.command("expiring")
def expiring(
    ctx: typer.Context,
    days: int = typer.Option(30, "--days", min=0, help="Report certificates ending within this many days."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Active credentials whose certificate ends soon (or has ended): renew them."""
    with read_transaction(state(ctx).runtime().sessions) as session:
        now = datetime.now(timezone.utc)
        views = [{**credential_view(c),
                  "days_left": (c.not_after.replace(tzinfo=c.not_after.tzinfo or timezone.utc) - now).days}
                 for c in credentials.expiring(session, timedelta(days=days), now)]
    if as_json:
        print_json(views)
        return
    if not views:
        console.print(f"no active certificate ends within {days} days")
        return
    table(["credential", "user", "provider", "valid until", "days left"],
          [(v["id"], v["user"], v["provider"], str(v["not_after"].date()), str(v["days_left"]))  # type: ignore[attr-defined]
           for v in views], ids=[0])


@cert_app.command("roots")
def roots(ctx: typer.Context, out: Path = typer.Option(..., "--out", help="Directory for the PEM files.")) -> None:
    """Write the trust anchors (roots only) of every provider as PEM files."""
    runtime = state(ctx).runtime()
    out.mkdir(parents=True, exist_ok=True)
    written: set[bytes] = set()
    for name in provider_names():
        for der in runtime.ca(name).trust_anchors():
            if der not in written:
                written.add(der)
                path = out / f"national-root-test{'' if len(written) == 1 else len(written)}.pem"
                path.write_bytes(pem.armor("CERTIFICATE", der))
                console.print(str(path))
