"""Consistent copies of the database: ``pg_dump -Fc``/``pg_restore`` for PostgreSQL, SQLite's online backup API.

Credentials never go on a command line (other users can read it in ``ps``): the password travels in
``PGPASSWORD``.
"""

from __future__ import annotations

import enum
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from broker.db.engine import make_engine
from broker.errors import KysoError

SQLITE_FILE = "database.sqlite"
POSTGRES_FILE = "database.pgdump"


class DatabaseCopyFailed(KysoError):
    code = "database_copy_failed"


class DatabaseKind(str, enum.Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"

    @property
    def file_name(self) -> str:
        return SQLITE_FILE if self is DatabaseKind.SQLITE else POSTGRES_FILE


def kind_of(url: str) -> DatabaseKind:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return DatabaseKind.SQLITE
    if backend == "postgresql":
        return DatabaseKind.POSTGRESQL
    raise DatabaseCopyFailed(f"backups support SQLite and PostgreSQL, not {backend}")


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for pg_dump/pg_restore, and the environment carrying the password."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def dump(url: str, dest_dir: Path) -> Path:
    """Write the database to ``dest_dir`` (one file); return its path."""
    kind = kind_of(url)
    target = dest_dir / kind.file_name
    if kind is DatabaseKind.SQLITE:
        _sqlite_copy(_sqlite_path(url), target)
    else:
        uri, env = libpq(url)
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(target), uri], env)
    os.chmod(target, 0o600)
    return target


def is_empty(url: str) -> bool:
    """No kyso tables (a new or wiped database)."""
    if kind_of(url) is DatabaseKind.SQLITE:
        path = _sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return True
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    finally:
        engine.dispose()


def load(url: str, source: Path) -> None:
    """Replace the database at ``url`` with the copy ``source`` (the caller checked emptiness or --force)."""
    if kind_of(url) is DatabaseKind.SQLITE:
        path = _sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)  # a stale WAL would be replayed over the restored pages
        _sqlite_copy(source, path)
        return
    _empty_postgres(url)
    uri, env = libpq(url)
    _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
          "--dbname", uri, str(source)], env)


def server_version(url: str) -> str | None:
    if kind_of(url) is DatabaseKind.SQLITE:
        return f"SQLite {sqlite3.sqlite_version}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar())
    finally:
        engine.dispose()


def _empty_postgres(url: str) -> None:
    """Drop kyso's tables, sequences and enum types in the current schema (a restore over --force)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("""
                DO $$ DECLARE r record; BEGIN
                  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
                    EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(r.tablename) || ' CASCADE';
                  END LOOP;
                  FOR r IN SELECT sequence_name FROM information_schema.sequences
                           WHERE sequence_schema = current_schema() LOOP
                    EXECUTE 'DROP SEQUENCE IF EXISTS ' || quote_ident(r.sequence_name) || ' CASCADE';
                  END LOOP;
                  FOR r IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                           WHERE n.nspname = current_schema() AND t.typtype = 'e' LOOP
                    EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(r.typname) || ' CASCADE';
                  END LOOP;
                END $$;
            """))
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise DatabaseCopyFailed("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Page-consistent copy, even while others write (WAL); the copy is one self-contained file."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise DatabaseCopyFailed(f"SQLite copy failed: {exc}") from exc
    finally:
        dst.close()
        src.close()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DatabaseCopyFailed(f"{name} is not installed (PostgreSQL client tools)")
    return path


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        # The first line of stderr names the problem; the URI never contains the password.
        reason = (result.stderr.strip().splitlines() or ["no output"])[0]
        raise DatabaseCopyFailed(f"{Path(args[0]).name} failed: {reason}")
