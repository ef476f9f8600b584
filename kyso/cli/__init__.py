"""The administrator's CLI, ``kyso``."""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

import typer

from broker.errors import KysoError
from broker.settings import resolve_data_dir
from ca_adapters import CaError
from hsm import HsmError
from kyso.cli import (
    audit_cmds,
    backup_cmds,
    ca_cmds,
    cert_cmds,
    client_cmds,
    device_cmds,
    serve_cmds,
    setup_cmds,
    sign_cmds,
)
from kyso.cli.context import CliState
from kyso.cli.output import console, fail
from signer import SignerError

app = typer.Typer(
    name="kyso",
    help="kyso: remote signing broker — administration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def version() -> str:
    try:
        return metadata.version("kyso")
    except metadata.PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"kyso {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional
        None, "--data-dir", help="Data dir (else KYSO_DATA_DIR, else ./kyso-data)."
    ),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="Print the version and exit."),
) -> None:
    ctx.obj = CliState(resolve_data_dir(data_dir))
    ctx.call_on_close(ctx.obj.close)


setup_cmds.register(app)
cert_cmds.register(app)
ca_cmds.register(app)
sign_cmds.register(app)
audit_cmds.register(app)
backup_cmds.register(app)
device_cmds.register(app)
serve_cmds.register(app)
client_cmds.register(app)

_DOMAIN_ERRORS = (KysoError, HsmError, SignerError, CaError)


def run(argv: list[str]) -> int:
    """Run one CLI command; domain errors become one line ``error [code]: message`` and exit 2."""
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    try:
        result = app(args=argv, prog_name="kyso", standalone_mode=False)
    except _DOMAIN_ERRORS as exc:
        fail(exc.code, exc.message)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        fail("aborted", "aborted")
        return 1
    except typer.TyperException as exc:  # usage errors: bad option, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":  # 'kyso' or 'kyso cert' alone: the help
            exc.show()  # type: ignore[attr-defined]
            return exc.exit_code
        fail("usage", _usage_message(exc))
        return 2
    except Exception as exc:  # an unexpected failure: one line, no secrets; the trace on demand
        if os.environ.get("KYSO_DEBUG"):
            raise
        fail("internal_error", f"{type(exc).__name__} (set KYSO_DEBUG=1 for the trace)")
        return 1
    return result if isinstance(result, int) else 0


def _usage_message(exc: typer.TyperException) -> str:
    """One line: the command, what is wrong, where the help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"


def main() -> None:
    sys.exit(run(sys.argv[1:]))
