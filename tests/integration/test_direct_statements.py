"""The hot path's statements run below SQLAlchemy's execution (``storage/direct.py``).

On psycopg ``direct.execute`` sends a statement's SQL on the driver's cursor;
elsewhere it runs ``Connection.execute``. Either way a caller must see what
``Connection.execute`` gives: the same rows under the same names, with the
types' processing (exact JSON values); the same cursor events; the same
errors, a lost connection invalidated and its error transient, a refused
statement's transaction left with nothing written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from celeriac.storage import connect, direct
from celeriac.storage.database import is_transient
from celeriac.storage.schema import Json, Timestamp
from tests.integration.test_fresh_statistics import statements_sent

_metadata = sa.MetaData()
_docs = sa.Table(
    "direct_docs",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("doc", Json, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", Timestamp, nullable=True),
)

#: Values native Celery's JSON carries: a huge int, NaN, a NUL character.
DOC = {"big": 2**70, "nan": math.nan, "text": "nul\x00é", "list": [1, 2.5, None]}

#: An insert with bound and constant parameters, returning labelled columns.
_ADD = (
    sa.insert(_docs)
    .values(
        id=sa.bindparam("b_id", type_=sa.Integer),
        doc=sa.bindparam("b_doc", type_=Json),
        kind="doc",
    )
    .returning(_docs.c.id, _docs.c.doc, _docs.c.kind.label("named"))
)
#: A select with a constant in its condition and a computed column.
_READ = sa.select(
    _docs.c.id,
    _docs.c.doc,
    (_docs.c.id * 10).label("tenfold"),
    _docs.c.at,
).where(_docs.c.kind == "doc", _docs.c.id >= sa.bindparam("b_from", type_=sa.Integer))


@pytest.fixture
def db(empty_database_url: str) -> Iterator[sa.Engine]:
    engine = connect(empty_database_url)
    _metadata.create_all(engine)
    yield engine
    engine.dispose()


def same_json(found: Any, expected: Any) -> bool:
    """Equal, NaN equal to NaN."""
    return repr(found) == repr(expected)


def test_rows_are_those_connection_execute_returns(db: sa.Engine) -> None:
    with db.begin() as conn:
        (added,) = direct.execute(conn, _ADD, {"b_id": 1, "b_doc": DOC})
        conn.execute(_ADD, {"b_id": 2, "b_doc": DOC})
    assert added._fields == ("id", "doc", "named")
    assert (added.id, added.named) == (1, "doc")
    assert same_json(added.doc, DOC)
    with db.connect() as conn:
        found = direct.execute(conn, _READ, {"b_from": 1})
        expected = conn.execute(_READ, {"b_from": 1})
        keys, rows = tuple(expected.keys()), expected.all()
    assert [row._fields for row in found] == [keys] * 2
    assert repr([tuple(row) for row in found]) == repr([tuple(row) for row in rows])
    assert [row.tenfold for row in found] == [10, 20]


def test_cursor_events_see_the_statement(db: sa.Engine) -> None:
    with db.begin() as conn, statements_sent(db) as sent:
        direct.execute(conn, _READ, {"b_from": 5})
    ((statement, parameters),) = sent
    assert statement.lstrip().upper().startswith("SELECT")
    assert 5 in (parameters.values() if isinstance(parameters, dict) else parameters)


def test_a_refused_statement_raises_as_sqlalchemy_and_leaves_nothing(
    db: sa.Engine,
) -> None:
    def add_twice() -> None:
        with db.begin() as conn:
            direct.execute(conn, _ADD, {"b_id": 3, "b_doc": 1})
            direct.execute(conn, _ADD, {"b_id": 3, "b_doc": 2})

    with pytest.raises(sa.exc.IntegrityError):
        add_twice()
    with db.connect() as conn:
        assert direct.execute(conn, _READ, {"b_from": 0}) == []


@pytest.mark.postgres
def test_a_lost_connection_is_invalidated_and_transient(
    empty_postgres_url: str,
) -> None:
    db = connect(empty_postgres_url)
    try:
        _metadata.create_all(db)
        with db.connect() as victim, db.connect() as admin:
            pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid}, 10000)")
            with pytest.raises(sa.exc.OperationalError) as caught:
                direct.execute(victim, _READ, {"b_from": 0})
            assert victim.invalidated
        assert caught.value.connection_invalidated
        assert is_transient(caught.value)
        with db.connect() as again:  # the pool gives a working connection
            assert direct.execute(again, _READ, {"b_from": 0}) == []
    finally:
        db.dispose()
