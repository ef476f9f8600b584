"""What ``kyso user import``, ``kyso cert enroll --from`` and ``kyso device activate --from`` share:
a progress bar (on stderr, only on a terminal) and the per-row report."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from broker.audit import cli_actor
from broker.errors import KysoError
from broker.runtime import Runtime
from ca_adapters import CaError
from hsm import HsmError
from kyso.cli.output import console, print_json, table
from kyso.operations import onboarding
from signer import SignerError

ROW_ERRORS: tuple[type[Exception], ...] = (KysoError, HsmError, SignerError, CaError)
"""What refuses one row (and the import goes on with the next)."""


@contextmanager
def progress(total: int, what: str) -> Iterator[Callable[[], None]]:
    """A callable to advance a bar of ``total`` rows, drawn on stderr when it is a terminal."""
    if not sys.stderr.isatty() or total == 0:
        yield lambda: None
        return
    bar = Progress(TextColumn(f"{what}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    with bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def batch(runtime: Runtime, file: Path, dry_run: bool, advance: Callable[[], None]) -> onboarding.Batch:
    return onboarding.Batch(runtime.sessions, cli_actor(), file.name, dry_run, advance)


def finish(report: onboarding.Report, what: str, dry_run: bool, as_json: bool) -> None:
    """Print the report, one line per row; exit 1 if a row was refused, 130 if interrupted."""
    if as_json:
        print_json({"dry_run": dry_run, "interrupted": report.interrupted,
                    "counts": {o: report.count(o) for o in (onboarding.DONE, onboarding.WOULD, onboarding.SKIPPED,
                                                            onboarding.REFUSED)},
                    "rows": [r.as_dict() for r in report.results]})
    else:
        table(["line", what, "outcome", "detail"],
              [(r.line, r.key, f"{r.outcome} ({r.code})" if r.code else r.outcome, r.detail) for r in report.results])
        console.print(("dry run: nothing changed; " if dry_run else "") + report.summary())
    if report.interrupted:
        console.print("interrupted: the rows above are done; run the same command again to go on")
        raise typer.Exit(130)
    if report.count(onboarding.REFUSED):
        if not as_json:
            console.print("fix the refused rows and run the same command again: rows already done are skipped")
        raise typer.Exit(1)
