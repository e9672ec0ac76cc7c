"""The statements every node runs are ones psycopg caches the parsing of.

psycopg turns a statement's ``%(name)s`` placeholders into ``$n`` ones on
every execution, unless the text is at most ``MAX_CACHED_STATEMENT_LENGTH``
characters long: then it does so once per process. The one-statement claim
and success run once per node on PostgreSQL; past that length each would
cost its parse again on every node.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from psycopg import _queries
from sqlalchemy.dialects import postgresql

from celeriac.storage import claims, success_statements

PER_NODE = {
    "claim": claims._CLAIM_FIRST_AT_ONCE,
    "success": success_statements.SUCCEED_AT_ONCE,
    "success counting down": success_statements.COUNT_DOWN_AT_ONCE,
    "success claiming the next node": success_statements.CLAIM_AT_ONCE,
}


@pytest.mark.parametrize("name", PER_NODE)
def test_a_statement_run_for_every_node_is_short_enough_to_be_cached(
    name: str,
) -> None:
    statement: sa.Executable = PER_NODE[name]
    text = str(statement.compile(dialect=postgresql.psycopg.dialect()))  # type: ignore[attr-defined]
    assert len(text) <= _queries.MAX_CACHED_STATEMENT_LENGTH, (
        f"the {name} statement is {len(text)} characters long"
    )
