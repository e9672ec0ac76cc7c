"""The hot path's statements, run on the driver's cursor below SQLAlchemy's execution.

A node's claim and its success are each one statement on PostgreSQL, built
once (``claims``, ``success_statements``). Run by ``Connection.execute``,
each cost about 135 µs of the worker's CPU, against about 80 µs this way,
on the benchmark's machine: the rest is the statement's cache key, its
parameters and the result's set-up. ``execute`` compiles such a statement
once per dialect and runs its SQL on a cursor of the connection's driver
(through the dialect's ``do_execute``), in the caller's transaction, with
what SQLAlchemy would do around it: its types' bind and result processing,
the ``before_cursor_execute`` and ``after_cursor_execute`` events, and a
driver error raised as SQLAlchemy raises it (wrapped, the connection
invalidated when it was lost), so that retries see the same errors.

Only for a statement of constant shape, on psycopg: any other driver runs it
through ``Connection.execute``.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

#: The driver whose cursor ``execute`` drives itself.
DRIVER = "psycopg"

Processor = Callable[[Any], Any]


class _Compiled(NamedTuple):
    """A statement compiled for one dialect, with what its execution needs."""

    sql: str
    #: the parameters the statement holds itself, processed
    constants: dict[str, Any]
    #: bind processors of the parameters given at each execution
    binds: dict[str, Processor]
    #: the class of a result row, and each column's result processor
    row: Callable[..., Any]
    results: tuple[Processor | None, ...]


#: By statement (held here, so that its identity is never another's) and dialect.
_compiled: dict[tuple[sa.Executable, str], _Compiled] = {}


def execute(
    conn: sa.Connection, statement: sa.Executable, values: Mapping[str, Any]
) -> list[Any]:
    """The rows ``statement`` returns for ``values``, run in ``conn``'s transaction.

    Rows are named tuples with the columns of a ``Row``. ``statement`` must be
    built once (a module constant): it is compiled once per dialect.
    """
    if conn.dialect.driver != DRIVER:
        return list(conn.execute(statement, dict(values)).all())
    key = (statement, conn.dialect.name)
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compile(statement, conn.dialect)
        _compiled[key] = compiled
    parameters = dict(compiled.constants)
    for name, value in values.items():
        process = compiled.binds.get(name)
        parameters[name] = value if process is None else process(value)
    raw = _send(conn, compiled.sql, parameters)
    processors = compiled.results
    return [
        compiled.row(
            *(
                value if process is None else process(value)
                for process, value in zip(processors, found, strict=True)
            )
        )
        for found in raw
    ]


def _send(conn: sa.Connection, sql: str, parameters: dict[str, Any]) -> Sequence[Any]:
    """Run ``sql`` on the driver's cursor; its rows, as the driver gives them.

    Through the dialect's ``do_execute``, as ``Connection.execute`` runs a
    statement: what hooks in there sees these too.
    """
    cursor = None
    try:
        cursor = conn.connection.cursor()
        conn.dispatch.before_cursor_execute(conn, cursor, sql, parameters, None, False)
        conn.dialect.do_execute(cursor, sql, parameters, None)
        found = cursor.fetchall() if cursor.description is not None else []
        conn.dispatch.after_cursor_execute(conn, cursor, sql, parameters, None, False)
        cursor.close()
    except BaseException as error:
        # as Connection.execute: a driver error wrapped, a lost connection
        # invalidated with its pool, anything else raised unchanged
        conn._handle_dbapi_exception(error, sql, parameters, cursor, None)
    return found


def _compile(statement: sa.Executable, dialect: sa.Dialect) -> _Compiled:
    """``statement`` compiled for ``dialect``, its processing looked up once."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    constants: dict[str, Any] = {}
    binds: dict[str, Processor] = {}
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            if process is not None:
                binds[name] = process
        else:
            value = bind.effective_value
            constants[name] = value if process is None else process(value)
    columns = statement.exported_columns  # type: ignore[attr-defined]
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in columns
    )
    row = namedtuple("Row", list(columns.keys()), rename=True)  # type: ignore[misc]
    return _Compiled(compiled.string, constants, binds, row, results)
