"""Many rows at once: the nodes and edges of a large submission."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa


def insert_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    same: Mapping[str, Any],
) -> None:
    """Insert ``rows`` into ``table`` inside the caller's transaction.

    Each row gives the values of ``columns``, in that order; ``same`` the
    values of the other columns, the same in every row. On PostgreSQL
    through psycopg 3 this is one ``COPY`` fed as the rows come (they are
    never all in memory at once), several times faster than executemany
    for a canvas of many thousand nodes; elsewhere an executemany.
    """
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        listed = [{**dict(zip(columns, row, strict=True)), **same} for row in rows]
        if listed:
            conn.execute(table.insert(), listed)
        return
    # the columns' own conversions (values to Celery's JSON text), which
    # SQLAlchemy applies to its statements and COPY would skip
    processors = [_processor(conn, table, name) for name in columns]
    fixed = []
    for name, value in same.items():
        process = _processor(conn, table, name)
        fixed.append(value if process is None else process(value))
    statement = f"COPY {table.name} ({', '.join([*columns, *same])}) FROM STDIN"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = [
                    value if process is None else process(value)
                    for value, process in zip(row, processors, strict=True)
                ]
                copy.write_row(values + fixed)
    except dbapi_error as exc:
        # the same exception SQLAlchemy raises for its own statements
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error) from exc


def _processor(conn: sa.Connection, table: sa.Table, name: str) -> Any:
    """The bind processor of column ``name`` (None: the value goes as it is)."""
    return table.c[name].type.bind_processor(conn.dialect)
