"""Onboarding many at once from CSV files: users, certificates, activation codes.

Every file is UTF-8 (a byte-order mark, as spreadsheets write it, is accepted) with a header row;
column names are matched without regard to case, and ``-`` or spaces count as ``_``. Rows are done
one by one, each in its own transaction and audited (``import.user``, ``import.credential``,
``import.activation``: outcome ``ok``, ``skipped`` or ``refused``, with the file and the line), so
an interrupted import leaves whole rows behind it; running the same file again skips what is done
(rows are keyed by their natural key: the username; the username and provider for certificates).

``users``: ``username,unit,full_name,national_id[,role][,email]`` (role: chief-accountant,
account-holder or other; empty: other).
``certificates``: ``username,ca[,key][,scheme]`` (key: rsa-2048 when empty).
``activations``: ``username`` (other columns are ignored).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from broker import approvals, audit, credentials, directory
from broker.audit import Actor
from broker.db.engine import read_transaction, transaction
from broker.db.models import (
    ActivationCode,
    ApprovalDevice,
    Credential,
    CredentialMode,
    CredentialStatus,
    DeviceStatus,
    Role,
    User,
    WebAuthnCredential,
)
from broker.errors import Conflict, InvalidInput
from broker.lifecycle.signing_requests import aware, now
from broker.settings import Settings

USER_COLUMNS = ("username", "unit", "full_name", "national_id", "role", "email")
USER_REQUIRED = ("username", "unit", "full_name", "national_id")
CERTIFICATE_COLUMNS = ("username", "ca", "key", "scheme")
CERTIFICATE_REQUIRED = ("username", "ca")
ACTIVATION_REQUIRED = ("username",)
CODES_HEADER = ("username", "full_name", "unit", "activation_code", "activation_uri", "expires_at")
MAX_ROWS = 100_000

ROLES = {"chief-accountant": Role.CHIEF_ACCOUNTANT, "account-holder": Role.ACCOUNT_HOLDER, "other": Role.OTHER}

DONE, SKIPPED, REFUSED, WOULD = "done", "skipped", "refused", "would do"


@dataclass(frozen=True)
class Row:
    line: int
    """The row's line in the file (the header is line 1)."""
    values: dict[str, str]


@dataclass(frozen=True)
class RowResult:
    line: int
    key: str
    outcome: str
    """done, skipped (already there), refused (``code`` says why) or, in a dry run, would do."""
    detail: str
    code: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "key": self.key, "outcome": self.outcome, "detail": self.detail, "code": self.code}


@dataclass
class Report:
    results: list[RowResult] = field(default_factory=list)
    interrupted: bool = False

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def summary(self) -> str:
        parts = [f"{self.count(o)} {o}" for o in (DONE, WOULD, SKIPPED, REFUSED) if self.count(o) or o in (DONE, REFUSED)]
        return ", ".join(parts)


class _DryRun(Exception):
    """Rolls a trial back."""


# -- reading -------------------------------------------------------------------------------------------


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def read_rows(path: Path, required: Iterable[str], known: Iterable[str] | None = None) -> list[Row]:
    """The rows of a CSV file with a header; blank lines skipped, values stripped."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read {str(path)[:200]}: {exc.strerror or type(exc).__name__}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{str(path)[:200]} is not UTF-8 (save it as CSV UTF-8)") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise InvalidInput(f"{str(path)[:200]} is empty: it needs a header row ({', '.join(required)})") from exc
    except csv.Error as exc:
        raise InvalidInput(f"{str(path)[:200]}: {exc}") from exc
    columns = [_column(h) for h in header]
    missing = [c for c in required if c not in columns]
    if missing:
        raise InvalidInput(f"{str(path)[:200]}: the header lacks {', '.join(missing)} (it has: "
                           f"{', '.join(c for c in columns if c)[:200]})")
    if known is not None:
        unknown = [c for c in columns if c and c not in known]
        if unknown:
            raise InvalidInput(f"{str(path)[:200]}: unknown columns {', '.join(unknown)[:200]} "
                               f"(known: {', '.join(known)})")
    if len(set(columns)) != len(columns):
        raise InvalidInput(f"{str(path)[:200]}: a column appears twice in the header")
    rows: list[Row] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(columns):
                raise InvalidInput(f"{str(path)[:200]} line {reader.line_num}: {len(values)} values for "
                                   f"{len(columns)} columns")
            rows.append(Row(reader.line_num, {c: (values[i].strip() if i < len(values) else "")
                                              for i, c in enumerate(columns) if c}))
            if len(rows) > MAX_ROWS:
                raise InvalidInput(f"{str(path)[:200]}: more than {MAX_ROWS} rows; split the file")
    except csv.Error as exc:
        raise InvalidInput(f"{str(path)[:200]} line {reader.line_num}: {exc}") from exc
    return rows


def _duplicates(rows: list[Row], key: Callable[[Row], str]) -> dict[int, int]:
    """Line of each row repeating an earlier row's key → the earlier row's line."""
    first: dict[str, int] = {}
    repeated: dict[int, int] = {}
    for row in rows:
        k = key(row)
        if k in first:
            repeated[row.line] = first[k]
        else:
            first[k] = row.line
    return repeated


# -- one row at a time ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    factory: sessionmaker[Session]
    actor: Actor
    source: str
    """The file's name, recorded with each row's audit event."""
    dry_run: bool = False
    advance: Callable[[], None] = lambda: None
    """Called after each row (a progress bar)."""


def _audit_row(batch: Batch, action: str, result: RowResult, target_type: str, target_id: str,
               session: Session | None = None) -> None:
    if batch.dry_run:
        return
    outcome = {DONE: "ok", SKIPPED: "skipped", REFUSED: "refused"}[result.outcome]
    details: dict[str, object] = {"file": batch.source[:200], "line": result.line}
    if result.outcome != DONE:
        details["reason"] = result.code or result.detail[:200]
    if session is not None:
        audit.record(session, batch.actor, action, outcome=outcome, target_type=target_type,
                     target_id=target_id[:64] or None, details=details)
        return
    with transaction(batch.factory) as own:
        audit.record(own, batch.actor, action, outcome=outcome, target_type=target_type,
                     target_id=target_id[:64] or None, details=details)


def _refused(row: Row, key: str, exc: Exception) -> RowResult:
    return RowResult(row.line, key, REFUSED, str(getattr(exc, "message", exc))[:300],
                     str(getattr(exc, "code", type(exc).__name__)))


def _run(batch: Batch, rows: list[Row], one: Callable[[Row], RowResult]) -> Report:
    """``one`` on each row in turn; an interruption (Ctrl-C) stops between rows, whole rows behind it."""
    report = Report()
    try:
        for row in rows:
            report.results.append(one(row))
            batch.advance()
    except KeyboardInterrupt:
        report.interrupted = True
    return report


# -- users ---------------------------------------------------------------------------------------------


def parse_role(value: str) -> Role:
    chosen = ROLES.get(value.strip().lower().replace("_", "-") or "other")
    if chosen is None:
        raise InvalidInput(f"role {value[:40]!r}: chief-accountant, account-holder or other")
    return chosen


def import_users(batch: Batch, rows: list[Row], errors: tuple[type[Exception], ...]) -> Report:
    repeated = _duplicates(rows, lambda r: r.values.get("username", ""))

    def one(row: Row) -> RowResult:
        v = row.values
        username = v.get("username", "")
        if row.line in repeated:
            result = RowResult(row.line, username, REFUSED, f"username repeats line {repeated[row.line]}", "duplicate")
            _audit_row(batch, "import.user", result, "user", username)
            return result
        try:
            with transaction(batch.factory) as session:
                existing = session.scalar(select(User).where(User.username == username))
                if existing is not None:
                    if existing.unit.code != v.get("unit", ""):
                        raise Conflict(f"user {username!r} already exists in unit {existing.unit.code!r}")
                    result = RowResult(row.line, username, SKIPPED, f"already there (unit {existing.unit.code})")
                    _audit_row(batch, "import.user", result, "user", username, session)
                    return result
                role = parse_role(v.get("role", ""))
                user = directory.add_user(session, batch.actor, username=username, unit_code=v.get("unit", ""),
                                          full_name=v.get("full_name", ""), national_id=v.get("national_id", ""),
                                          role=role, email=v.get("email") or None)
                detail = f"{user.full_name}, {user.unit.code}, {role.value.replace('_', '-')}"
                if batch.dry_run:
                    raise _DryRun(detail)
                result = RowResult(row.line, username, DONE, detail)
                _audit_row(batch, "import.user", result, "user", username, session)
                return result
        except _DryRun as trial:
            return RowResult(row.line, username, WOULD, str(trial))
        except errors as exc:
            result = _refused(row, username, exc)
            _audit_row(batch, "import.user", result, "user", username)
            return result

    return _run(batch, rows, one)


# -- certificates --------------------------------------------------------------------------------------


Enroll = Callable[[str, str, str, str | None], str]
"""(username, provider, key, scheme) → the new credential's id."""


def enroll_certificates(batch: Batch, rows: list[Row], errors: tuple[type[Exception], ...], enroll: Enroll,
                        providers: Iterable[str]) -> Report:
    known = set(providers)
    repeated = _duplicates(rows, lambda r: f"{r.values.get('username', '')}/{r.values.get('ca', '').lower()}")

    def one(row: Row) -> RowResult:
        v = row.values
        username, provider = v.get("username", ""), v.get("ca", "").lower()
        key_name, scheme = v.get("key") or "rsa-2048", v.get("scheme") or None
        key = f"{username}/{provider}"
        try:
            if row.line in repeated:
                raise InvalidInput(f"repeats line {repeated[row.line]}")
            if provider not in known:
                raise InvalidInput(f"unknown provider {provider[:40]!r}; known: {', '.join(sorted(known))}")
            algorithm = credentials.parse_key_algorithm(key_name)
            if scheme:
                credentials.parse_scheme(scheme, algorithm)
            with read_transaction(batch.factory) as session:
                user = directory.get_user(session, username)
                existing = session.scalar(select(Credential.id).where(
                    Credential.user_id == user.id, Credential.provider == provider,
                    Credential.status == CredentialStatus.ACTIVE, Credential.mode == CredentialMode.HOSTED))
                if existing is None:
                    directory.check_user_enabled(user)
                    credentials.check_unit_remote(user.unit)
            if existing is not None:
                result = RowResult(row.line, key, SKIPPED, f"already there: credential {existing}")
                _audit_row(batch, "import.credential", result, "credential", existing)
                return result
            if batch.dry_run:
                return RowResult(row.line, key, WOULD, f"enroll {key_name} with {provider}")
            made = enroll(username, provider, key_name, scheme)
        except errors as exc:
            result = _refused(row, key, exc)
            _audit_row(batch, "import.credential", result, "user", username)
            return result
        result = RowResult(row.line, key, DONE, f"credential {made}")
        _audit_row(batch, "import.credential", result, "credential", made)
        return result

    return _run(batch, rows, one)


# -- activation codes ----------------------------------------------------------------------------------


class CodesFile:
    """Activation codes for distribution: a CSV file of mode 0600, appended to (a run that resumes adds
    its codes after those of the interrupted one), each code on disk before its row commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise InvalidInput(f"cannot write {str(path)[:200]}: {exc.strerror or type(exc).__name__}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InvalidInput(f"{str(path)[:200]} is not a regular file")
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        if info.st_size == 0:
            self._write(CODES_HEADER)

    def _write(self, values: Iterable[str]) -> None:
        self._writer.writerow(values)
        self._file.flush()
        os.fsync(self._file.fileno())

    def add(self, user: User, code: str, uri: str, expires_at: datetime) -> None:
        self._write((user.username, user.full_name, user.unit.code, code, uri, expires_at.isoformat(timespec="seconds")))

    def close(self) -> None:
        self._file.close()


def _has_active_device(session: Session, user_id: int) -> bool:
    phone = session.scalar(select(ApprovalDevice.id).where(ApprovalDevice.user_id == user_id,
                                                           ApprovalDevice.status == DeviceStatus.ACTIVE).limit(1))
    web = session.scalar(select(WebAuthnCredential.id).where(WebAuthnCredential.user_id == user_id,
                                                             WebAuthnCredential.status == DeviceStatus.ACTIVE).limit(1))
    return phone is not None or web is not None


def _open_code_expiry(session: Session, user_id: int) -> datetime | None:
    moment = now()
    expiries = session.scalars(select(ActivationCode.expires_at).where(ActivationCode.user_id == user_id,
                                                                       ActivationCode.used_at.is_(None)))
    live = [aware(e) for e in expiries if aware(e) > moment]
    return max(live) if live else None


def issue_activation_codes(batch: Batch, rows: list[Row], errors: tuple[type[Exception], ...], settings: Settings,
                           codes: CodesFile | None) -> Report:
    """A code for each user without an active device or a code still open (``codes``: None in a dry run)."""
    repeated = _duplicates(rows, lambda r: r.values.get("username", ""))

    def one(row: Row) -> RowResult:
        username = row.values.get("username", "")
        try:
            if row.line in repeated:
                raise InvalidInput(f"repeats line {repeated[row.line]}")
            with transaction(batch.factory) as session:
                user = directory.get_user(session, username)
                directory.check_user_enabled(user)
                skip = None
                if _has_active_device(session, user.id):
                    skip = "already there: an active device"
                elif (open_until := _open_code_expiry(session, user.id)) is not None:
                    skip = f"already there: a code issued earlier, open until {open_until:%Y-%m-%d %H:%M} UTC"
                if skip is not None:
                    result = RowResult(row.line, username, SKIPPED, skip)
                    _audit_row(batch, "import.activation", result, "user", username, session)
                    return result
                if batch.dry_run or codes is None:
                    return RowResult(row.line, username, WOULD, "issue an activation code")
                code, uri = approvals.issue_activation_code(session, settings, batch.actor, username)
                expires = _open_code_expiry(session, user.id) or now()
                codes.add(user, code, uri, expires)  # on disk before the row commits: no code is lost
                result = RowResult(row.line, username, DONE, f"code written to {codes.path.name}")
                _audit_row(batch, "import.activation", result, "user", username, session)
                return result
        except errors as exc:
            result = _refused(row, username, exc)
            _audit_row(batch, "import.activation", result, "user", username)
            return result

    return _run(batch, rows, one)

