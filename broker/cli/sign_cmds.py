"""``kyso sign`` and ``kyso verify``."""

from __future__ import annotations

import base64
import dataclasses
import enum
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import typer
from asn1crypto import pem, x509

from broker.audit import cli_actor
from broker.cli.context import state
from broker.cli.output import console, table
from broker.db.engine import transaction
from broker.db.models import RequestState
from broker.errors import InvalidInput, PolicyViolation
from broker.services import credentials, directory, document_signing, local_signing, sole_control
from ca_adapters import provider_names
from signer import pades, validate


class Format(str, enum.Enum):
    pades = "pades"
    cades = "cades"


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)
    app.command("verify")(verify)


def sign(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The document to sign."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the signed PDF or the CMS."),
    user: Optional[str] = typer.Option(None, "--user", help="Sign with this user's default credential."),  # noqa: UP007
    credential_id: Optional[str] = typer.Option(None, "--credential", help="Sign with this credential."),  # noqa: UP007
    fmt: Format = typer.Option(Format.pades, "--format", help="pades (PDF) or cades (any file)."),
    enveloping: bool = typer.Option(False, "--enveloping", help="CAdES: embed the content (.p7m)."),
    field: str = typer.Option("Signature1", "--field", help="PAdES: the signature field (made if missing)."),
    certify: bool = typer.Option(False, "--certify", help="PAdES: certify (first signer; fill forms and sign)."),
    reason: Optional[str] = typer.Option(None, "--reason"),  # noqa: UP007
    location: Optional[str] = typer.Option(None, "--location"),  # noqa: UP007
    stamp: Optional[str] = typer.Option(None, "--stamp", help="PAdES: visible text; %(signer)s and %(ts)s are filled."),  # noqa: UP007
    unconfirmed: bool = typer.Option(False, "--unconfirmed", help="Sign without the signer's confirmation (sandbox only)."),
) -> None:
    """Sign a file as a credential once its signer approves (phone or browser); or, in a sandbox, --unconfirmed."""
    if (user is None) == (credential_id is None):
        raise InvalidInput("name exactly one of --user or --credential")
    if not file.is_file():
        raise InvalidInput(f"no such file: {file}")
    if fmt is Format.pades and enveloping:
        raise InvalidInput("--enveloping is for CAdES")
    runtime = state(ctx).runtime()
    if unconfirmed and not runtime.settings.sandbox:
        raise PolicyViolation("unconfirmed signing is refused outside a sandbox data dir (kyso init --sandbox)")
    actor = cli_actor()
    server = state(ctx).server()  # a running server holds the token: the HSM work goes through it
    options = None
    with transaction(runtime.sessions) as session:
        if credential_id is not None:
            credential = credentials.get_credential(session, credential_id)
        else:
            assert user is not None
            credential = credentials.default_credential(session, directory.get_user(session, user))
        if fmt is Format.pades:
            options = pades.PadesOptions(
                field_name=field,
                certify=certify,
                reason=reason,
                location=location,
                signer_name=credential.user.full_name,
                stamp_text=stamp,
            )
        if unconfirmed and server is not None:
            chosen = credential.id  # the server signs in its own transaction, after this one ends
        elif unconfirmed:
            if options is not None:
                local_signing.sign_pdf(session, actor, runtime.hsm, credential, local_signing.PdfRequest(file, out, options))
            else:
                local_signing.sign_cades(session, actor, runtime.hsm, credential, file, out, detached=not enveloping)
            console.print(f"signed {file} → {out} (unconfirmed, sandbox)")
            return
        else:
            pending = document_signing.start(session, runtime.settings, actor, credential, file, out,
                                             pdf_options=options, detached=not enveloping)
            signer_name = credential.user.username
    if unconfirmed and server is not None:
        server.call("POST", "/unconfirmed-signatures", {
            "credential_id": chosen, "input_path": str(file.resolve()), "output_path": str(out.resolve()),
            "pdf_options": dataclasses.asdict(options) if options is not None else None, "detached": not enveloping})
        console.print(f"signed {file} → {out} (unconfirmed, sandbox, through the running server)")
        return
    console.print(f"request {pending.request_id}: verification code {pending.verification_code}", markup=False)
    console.print(f"waiting for {signer_name} to approve on their phone or browser (until {pending.expires_at})",
                  markup=False)
    outcome = document_signing.wait_for_decision(runtime.sessions, runtime.notifier, pending.request_id, actor)
    if outcome is not RequestState.APPROVED:
        document_signing.abandon(pending)
        document_signing.raise_for_state(outcome, pending.request_id)
    if server is not None:
        def sign_approved(request_id: str) -> list[bytes]:
            answer = server.call("POST", f"/requests/{quote(request_id, safe='')}/sign")
            return [base64.b64decode(s) for s in answer["signatures"]]
    else:
        def sign_approved(request_id: str) -> list[bytes]:
            return sole_control.sign_approved(runtime.sessions, runtime.hsm, actor, request_id)
    document_signing.complete(runtime.sessions, sign_approved, pending)
    console.print(f"signed {file} → {out}")


def verify(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A signed PDF, or a .p7s/.p7m CMS signature."),
    content: Optional[Path] = typer.Option(None, "--content", help="The content of a detached .p7s."),  # noqa: UP007
    trust: Optional[list[Path]] = typer.Option(None, "--trust", help="Trust anchor PEM (default: the test root)."),  # noqa: UP007
    long_term: bool = typer.Option(False, "--long-term", help="From the embedded validation data alone: "
                                   "hard-fail revocation checking, nothing fetched (B-LT, B-LTA)."),
) -> None:
    """Validate signatures against trust anchors; exit 1 unless every one is valid."""
    if not file.is_file():
        raise InvalidInput(f"no such file: {file}")
    if content is not None and not content.is_file():
        raise InvalidInput(f"no such file: {content}")
    roots = _load_roots(trust) if trust else _default_roots(ctx)
    if file.read_bytes()[:5] == b"%PDF-":
        reports = validate.validate_pdf(file, roots, long_term=long_term)
    else:
        reports = [validate.validate_cms(file.read_bytes(), roots, content.read_bytes() if content else None,
                                         long_term=long_term)]
    table(
        ["signature", "signer", "intact", "trusted", "timestamp", "modifications", "result"],
        [
            (r.label, r.signer, r.intact, r.trusted, r.timestamp.isoformat(timespec="seconds") if r.timestamp else "-",
             r.modification_level or "-", "VALID" if r.ok else f"INVALID {r.problem or ''}")
            for r in reports
        ],
    )
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _load_roots(paths: list[Path]) -> list[x509.Certificate]:
    roots = []
    for path in paths:
        if not path.is_file():
            raise InvalidInput(f"no such file: {path}")
        data = path.read_bytes()
        try:
            for _, _, der in pem.unarmor(data, multiple=True) if pem.detect(data) else [(None, None, data)]:
                roots.append(x509.Certificate.load(der))
        except ValueError as exc:
            raise InvalidInput(f"{path} is not a certificate: {exc}") from None
    return roots


def _default_roots(ctx: typer.Context) -> list[x509.Certificate]:
    runtime = state(ctx).runtime()
    ders = {der for name in provider_names() for der in runtime.ca(name).trust_anchors()}
    return [x509.Certificate.load(der) for der in ders]
