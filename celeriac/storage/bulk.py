"""Many rows at once: the nodes and edges of a large submission."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

#: Takes one row: the values of the writer's columns, in their order.
RowSink = Callable[[Sequence[Any]], None]


def insert_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    same: Mapping[str, Any],
) -> None:
    """Insert ``rows`` into ``table`` inside the caller's transaction.

    Each row gives the values of ``columns``, in that order; ``same`` the
    values of the other columns, the same in every row.
    """
    with row_writer(conn, table, columns, same) as write:
        for row in rows:
            write(row)


@contextmanager
def row_writer(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    same: Mapping[str, Any],
) -> Iterator[RowSink]:
    """A function that inserts one row into ``table``, for the block's length.

    As ``insert_rows``. On PostgreSQL through psycopg 3 each row goes into
    one ``COPY`` as it is given, several times faster than executemany for
    a canvas of many thousand nodes, and the server stores rows while the
    caller makes the next ones; elsewhere the rows are kept and inserted
    with one executemany when the block ends. An exception raised in the
    block aborts the insert.
    """
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg":
        listed: list[dict[str, Any]] = []
        yield lambda row: listed.append(
            {**dict(zip(columns, row, strict=True)), **same}
        )
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

            def write(row: Sequence[Any]) -> None:
                values = [
                    value if process is None else process(value)
                    for value, process in zip(row, processors, strict=True)
                ]
                copy.write_row(values + fixed)

            yield write
    except dbapi_error as exc:
        # the same exception SQLAlchemy raises for its own statements
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error) from exc


def _processor(conn: sa.Connection, table: sa.Table, name: str) -> Any:
    """The bind processor of column ``name`` (None: the value goes as it is)."""
    return table.c[name].type.bind_processor(conn.dialect)
