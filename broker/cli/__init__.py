"""The administrator's CLI, ``kyso``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from broker.cli import audit_cmds, cert_cmds, setup_cmds, sign_cmds
from broker.cli.context import CliState
from broker.cli.output import fail
from broker.errors import KysoError
from broker.settings import resolve_data_dir
from ca_adapters import CaError
from hsm import HsmError
from signer import SignerError

app = typer.Typer(
    name="kyso",
    help="kyso: remote signing broker — administration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    data_dir: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional
        None, "--data-dir", help="Data dir (else KYSO_DATA_DIR, else ./kyso-data)."
    ),
) -> None:
    ctx.obj = CliState(resolve_data_dir(data_dir))
    ctx.call_on_close(ctx.obj.close)


setup_cmds.register(app)
cert_cmds.register(app)
sign_cmds.register(app)
audit_cmds.register(app)

_DOMAIN_ERRORS = (KysoError, HsmError, SignerError, CaError)


def main() -> None:
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    try:
        result = app(standalone_mode=False)
    except _DOMAIN_ERRORS as exc:
        fail(exc.code, exc.message)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        fail("aborted", "aborted")
        sys.exit(1)
    except Exception as exc:  # an unexpected failure: one line, no secrets; the trace on demand
        if os.environ.get("KYSO_DEBUG"):
            raise
        fail("internal_error", f"{type(exc).__name__} (set KYSO_DEBUG=1 for the trace)")
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
