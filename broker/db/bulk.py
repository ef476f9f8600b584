"""Many rows in one round trip: a request's up to 50 hashes are written together.

On PostgreSQL, psycopg's ``executemany`` sends one statement per row (pipelined, but each bound,
sent and answered on its own): the rows go in with ``COPY`` instead. SQLite's ``executemany`` runs
in C inside the process and stays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.exc import DBAPIError


def insert_rows(connection: Connection, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT`` the ``rows`` (each with the same keys, the table's column names) in the caller's transaction."""
    if not rows or connection.dialect.name != "postgresql":
        connection.execute(statement, list(rows))
        return
    table = statement.table
    assert isinstance(table, Table)
    columns = list(rows[0])
    # A column list of the table's own names (no user text): quoted as PostgreSQL identifiers.
    names = ", ".join(connection.dialect.identifier_preparer.quote(table.c[c].name) for c in columns)
    command = f"COPY {connection.dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN"
    enums = [isinstance(rows[0][c], enum.Enum) for c in columns]  # kyso stores an enum as its value
    driver = connection.connection.driver_connection
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:  # the driver's own cursor, on the connection (and in the transaction) the caller's statements use
        with driver.cursor() as cursor, cursor.copy(command) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row([row[c].value if is_enum else row[c] for c, is_enum in zip(columns, enums)])
    except dbapi_error as error:  # raised as a statement's error would be (an IntegrityError is one)
        lost = connection.dialect.is_disconnect(error, connection.connection.dbapi_connection, None)
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(command, None, error, dbapi_error, connection_invalidated=lost,
                                  dialect=connection.dialect) from error

