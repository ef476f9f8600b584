"""``kyso sign`` and ``kyso verify``."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import typer

from broker import credentials, directory
from broker.audit import cli_actor
from broker.db.engine import transaction
from broker.db.models import RequestState
from broker.errors import InvalidInput, PolicyViolation
from broker.lifecycle import local_documents, sole_control, unconfirmed_signing, waiting
from ca_adapters import get_adapter, provider_names
from kyso.cli.context import state
from kyso.cli.output import console, table
from signer import ltv, pipeline, reports, validation


class Format(str, enum.Enum):
    pades = "pades"
    cades = "cades"
    xades = "xades"


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)
    app.command("verify")(verify)


def sign(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The document to sign."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the signed PDF, CMS or XML."),
    user: Optional[str] = typer.Option(None, "--user", help="Sign with this user's default credential."),  # noqa: UP007
    credential_id: Optional[str] = typer.Option(None, "--credential", help="Sign with this credential."),  # noqa: UP007
    fmt: Format = typer.Option(Format.pades, "--format",
                               help="pades (PDF), cades (any file) or xades (an XML signature inside the XML)."),
    xml: bool = typer.Option(False, "--xml", help="Same as --format xades."),
    level: str = typer.Option("B-B", "--level", help="B-B, B-T, B-LT (and B-LTA for PAdES)."),
    enveloping: bool = typer.Option(False, "--enveloping", help="CAdES: embed the content (.p7m)."),
    field: str = typer.Option("Signature1", "--field", help="PAdES: the signature field (made if missing)."),
    certify: bool = typer.Option(False, "--certify", help="PAdES: certify (first signer; fill forms and sign)."),
    reason: Optional[str] = typer.Option(None, "--reason"),  # noqa: UP007
    location: Optional[str] = typer.Option(None, "--location"),  # noqa: UP007
    stamp: Optional[str] = typer.Option(None, "--stamp", help="PAdES: visible text; %(signer)s and %(ts)s are filled."),  # noqa: UP007
    page: Optional[int] = typer.Option(None, "--page", help="PAdES, a new field: its page (1 is the first)."),  # noqa: UP007
    box: Optional[str] = typer.Option(None, "--box", help="PAdES, a new field: x1,y1,x2,y2 in points."),  # noqa: UP007
    reference_id: Optional[str] = typer.Option(None, "--reference-id", help="XAdES: the Id of the element signed."),  # noqa: UP007
    placement: Optional[str] = typer.Option(None, "--placement",  # noqa: UP007
                                            help="XAdES: where the signature goes, e.g. /Hoso/CKy_Dvi or //Cky."),
    unconfirmed: bool = typer.Option(False, "--unconfirmed", help="Sign without the signer's confirmation (sandbox only)."),
) -> None:
    """Sign a file as a credential once its signer approves (phone or browser); or, in a sandbox, --unconfirmed."""
    fmt = Format.xades if xml else fmt
    if (user is None) == (credential_id is None):
        raise InvalidInput("name exactly one of --user or --credential")
    if not file.is_file():
        raise InvalidInput(f"no such file: {file}")
    if fmt is not Format.cades and enveloping:
        raise InvalidInput("--enveloping is for CAdES")
    if fmt is Format.xades and not (reference_id and placement):
        raise InvalidInput("an XML signature needs --reference-id (the Id of the element signed) and --placement")
    chosen_level = _level(fmt, level)
    runtime = state(ctx).runtime()
    if unconfirmed and not runtime.settings.sandbox:
        raise PolicyViolation("unconfirmed signing is refused outside a sandbox data dir (kyso init --sandbox)")
    actor = cli_actor()
    server = state(ctx).server()  # a running server holds the token: the HSM work goes through it
    with transaction(runtime.sessions) as session:
        if credential_id is not None:
            credential = credentials.get_credential(session, credential_id)
        else:
            assert user is not None
            credential = credentials.default_credential(session, directory.get_user(session, user))
        spec: pipeline.Spec
        if fmt is Format.pades:
            spec = pipeline.PadesSpec(field, certify, reason, location, stamp, credential.user.full_name, page,
                                      _box(box))
        elif fmt is Format.xades:
            spec = pipeline.XadesSpec(str(reference_id), str(placement))
        else:
            spec = pipeline.CadesSpec(enveloping=enveloping)
        provider_name = credential.provider
        services = runtime.long_term_services(provider_name) if chosen_level.timestamped else None
        if unconfirmed and server is not None:
            chosen = credential.id  # the server signs in its own transaction, after this one ends
        elif unconfirmed:
            reached = unconfirmed_signing.sign(session, actor, runtime.hsm, credential, runtime.ca(provider_name), spec,
                                               file, out, level=chosen_level, services=services)
            console.print(f"signed {file} → {out} ({reached.value}, unconfirmed, sandbox)")
            return
        else:
            local = local_documents.start(session, runtime.settings, actor, credential, spec, file, out,
                                          provider=runtime.ca(provider_name), level=chosen_level)
            signer_name = credential.user.username
    if unconfirmed and server is not None:
        answer = server.call("POST", "/unconfirmed-signatures", {
            "credential_id": chosen, "input_path": str(file.resolve()), "output_path": str(out.resolve()),
            "format": fmt.value, "spec": dataclasses.asdict(spec), "level": chosen_level.value})
        console.print(f"signed {file} → {out} ({answer['level']}, unconfirmed, sandbox, through the running server)")
        return
    console.print(f"request {local.request_id}: verification code {local.verification_code}")
    console.print(f"waiting for {signer_name} to approve on their phone or browser (until {local.expires_at})")
    outcome = waiting.wait_for_decision(runtime.sessions, runtime.notifier, local.request_id, actor)
    if outcome is not RequestState.APPROVED:
        local_documents.abandon(local)
        waiting.raise_for_state(outcome, local.request_id)
    if server is not None:
        def sign_approved(request_id: str) -> list[bytes]:
            answer = server.call("POST", f"/requests/{quote(request_id, safe='')}/sign")
            return [base64.b64decode(s) for s in answer["signatures"]]
    else:
        def sign_approved(request_id: str) -> list[bytes]:
            return sole_control.sign_approved(runtime.sessions, runtime.hsm, actor, request_id)
    reached = local_documents.complete(runtime.sessions, sign_approved, local, services)
    console.print(f"signed {file} → {out} ({reached.value})")


def _box(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in value.split(","))
    except ValueError:
        raise InvalidInput(f"--box is x1,y1,x2,y2 in points, not {value[:40]!r}") from None
    return x1, y1, x2, y2


def _level(fmt: Format, value: str) -> ltv.Level:
    allowed = tuple(ltv.Level) if fmt is Format.pades else (ltv.Level.B_B, ltv.Level.B_T, ltv.Level.B_LT)
    try:
        return ltv.parse_level(value, allowed=allowed)
    except ltv.UnsupportedLevel as exc:
        raise InvalidInput(f"{fmt.value}: {exc.message}") from exc


def verify(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A signed PDF, or a .p7s/.p7m CMS signature."),
    content: Optional[Path] = typer.Option(None, "--content", help="The content of a detached .p7s."),  # noqa: UP007
    trust: Optional[list[Path]] = typer.Option(  # noqa: UP007
        None, "--trust", envvar="KYSO_TRUST_STORE", help="Trust anchors: a PEM/DER file or a directory of them."),
    at: Optional[str] = typer.Option(None, "--at", help="Validate as at this time (ISO 8601; default now)."),  # noqa: UP007
    fetch: bool = typer.Option(False, "--fetch", help="Fetch OCSP/CRL named in the certificates if not embedded."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the human report: out.html or out.pdf."),  # noqa: UP007
    lang: str = typer.Option("vi", "--lang", help="Language of the human report: vi or en."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate every signature (ETSI indications); exit 0 if all are TOTAL_PASSED, 1 if not, 2 on bad input.

    Needs no data dir: it opens neither the HSM nor the database.
    """
    for path in (file, content):
        if path is not None and not path.is_file():
            raise InvalidInput(f"no such file: {path}")
    if report is not None and report.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise InvalidInput("--report writes .html or .pdf")
    if lang not in reports.LANGUAGES:
        raise InvalidInput("--lang is vi or en")
    moment = _parse_time(at) if at else None
    for name in ("pyhanko", "pyhanko_certvalidator"):  # their warnings are the report's reasons, not stderr noise
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    store = validation.load_trust_store(*trust) if trust else _data_dir_trust(ctx)
    options = validation.ValidationOptions(store, at=moment, fetch_revocation=fetch)
    result = validation.validate_file(file, options, content=content)
    if report is not None:
        if report.suffix.lower() == ".pdf":
            report.write_bytes(reports.render_pdf(result, lang))
        else:
            report.write_text(reports.render_html(result, lang), encoding="utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        table(["signature", "signer", "indication", "sub-indication", "level", "proven time"],
              [(v.id, v.signer, v.indication.value, v.sub_indication or "-", v.level or "-",
                v.proven_signing_time.isoformat(timespec="seconds") if v.proven_signing_time else "-")
               for v in result.signatures])
        for v in result.signatures:
            for reason in v.reasons:
                console.print(f"{v.id}: {reason}", markup=False, highlight=False)
    if not result.passed:
        raise typer.Exit(1)


def _data_dir_trust(ctx: typer.Context) -> validation.TrustStore:
    """Without --trust: the data dir's trust store setting, else its providers' roots (files only: no HSM, no DB)."""
    settings = state(ctx).settings()
    if settings.trust_store is not None:
        return validation.load_trust_store(settings.trust_store)
    if not settings.config_path.exists():
        raise InvalidInput("name the trust anchors: --trust FILE_OR_DIR or KYSO_TRUST_STORE")
    ders = {der for name in provider_names() for der in get_adapter(
        name, settings.pki_dir, test_mode=settings.sandbox, endpoints=settings.provider_endpoints.get(name)
    ).trust_anchors()}
    roots = [cert for der in ders for cert in validation.parse_certificates(der, "a provider's root")]
    return validation.trust_store_of(roots, f"the providers' roots in {settings.data_dir}")


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"--at is an ISO 8601 time, not {value!r}") from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if moment > datetime.now(timezone.utc):
        raise InvalidInput("--at cannot be in the future")
    return moment
