"""Many rows in one round trip: a request's up to 50 hashes are written, then signed, together.

On PostgreSQL, psycopg's ``executemany`` sends one statement per row (pipelined, but each bound,
sent and answered on its own): the rows go in with ``COPY`` instead, and the signatures in with one
``UPDATE … FROM (VALUES …)``. SQLite's ``executemany`` runs in C inside the process and stays.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Integer, LargeBinary, Table, TextClause, Update, bindparam, text


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
    target = connection.dialect.identifier_preparer.format_table(table)
    # The driver's own cursor, on the connection (and in the transaction) the caller's statements use.
    with connection.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row([_plain(row[c]) for c in columns])


def _plain(value: Any) -> Any:
    """What the column stores: an enum's value (kyso's enums are stored as their values, as text)."""
    return value.value if isinstance(value, enum.Enum) else value


def set_signatures(connection: Connection, per_row: Update, table: Table, state_from: enum.Enum, state_to: enum.Enum,
                   signatures: Sequence[tuple[int, bytes]]) -> None:
    """Each ``(row id, signature)``: the row's ``signature`` set and its ``state`` moved from ``state_from``
    to ``state_to`` (a row no longer in ``state_from`` is left as it is). ``per_row`` (``b_item_id``,
    ``b_signature``) is the statement run once per row where one statement for all cannot be."""
    if connection.dialect.name != "postgresql":
        connection.execute(per_row, [{"b_item_id": i, "b_signature": s} for i, s in signatures])
        return
    params: dict[str, Any] = {"b_from": state_from.value, "b_to": state_to.value}
    for n, (item_id, signature) in enumerate(signatures):
        params[f"i{n}"], params[f"s{n}"] = item_id, signature
    connection.execute(_signatures_statement(table.name, len(signatures)), params)


@functools.cache
def _signatures_statement(table: str, count: int) -> TextClause:
    """``UPDATE table … FROM (VALUES …)`` for ``count`` rows, built once per table and count."""
    rows = ", ".join(f"(:i{n}, :s{n})" for n in range(count))
    statement = text(f"UPDATE {table} SET state = :b_to, signature = v.signature FROM (VALUES {rows}) "
                     f"AS v(id, signature) WHERE {table}.id = v.id AND {table}.state = :b_from")
    return statement.bindparams(*(bindparam(f"i{n}", type_=Integer) for n in range(count)),
                                *(bindparam(f"s{n}", type_=LargeBinary) for n in range(count)))
