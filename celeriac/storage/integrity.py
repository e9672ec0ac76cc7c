"""Stored rows checked on the way out: a row celeriac did not write is named.

A value that does not decode fails the whole read, as the decoder runs while
rows are fetched: :func:`names_corruption` turns that failure into a
``CorruptRecord`` naming the workflow, the node and the column, found by
reading the values again as raw text. The other functions check what decodes
but has the wrong shape (a signature that is not an object, a state celeriac
does not know), where rows become records, and before a state change commits.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa

from celeriac.errors import CorruptRecord
from celeriac.states import NodeKind, NodeState, WorkflowState
from celeriac.storage.batches import PAGE
from celeriac.storage.schema import attempts, nodes, workflows
from celeriac.storage.values import ExactJson, ExactText, decode

WORKFLOW_STATES = frozenset(WorkflowState)
NODE_STATES = frozenset(NodeState)
NOT_AN_OBJECT = "is not a JSON object"

P = ParamSpec("P")
R = TypeVar("R")


class _HasDatabase(Protocol):
    db: sa.Engine


S = TypeVar("S", bound=_HasDatabase)


def workflow_state(workflow_id: str, state: str) -> str:
    """``state``, if it is a workflow state; else ``CorruptRecord``."""
    if state not in WORKFLOW_STATES:
        raise CorruptRecord(
            workflow_id, None, "state", f"is {state!r}, not a workflow state"
        )
    return state


def node_state(workflow_id: str, node_id: str, state: str) -> str:
    """``state``, if it is a node state; else ``CorruptRecord``."""
    if state not in NODE_STATES:
        raise CorruptRecord(
            workflow_id, node_id, "state", f"is {state!r}, not a node state"
        )
    return state


def metadata(workflow_id: str, value: Any) -> dict[str, Any] | None:
    """A workflow's metadata: None or an object."""
    if value is not None and not isinstance(value, dict):
        raise CorruptRecord(workflow_id, None, "metadata", NOT_AN_OBJECT)
    return value


def signature(workflow_id: str, node_id: str, value: Any) -> dict[str, Any]:
    """A task's or errback's signature: an object."""
    if not isinstance(value, dict):
        raise CorruptRecord(workflow_id, node_id, "signature", NOT_AN_OBJECT)
    return value


def check_node_states(conn: sa.Connection, workflow_id: str) -> None:
    """``CorruptRecord`` for the first node of the workflow in an unknown state."""
    row = conn.execute(
        sa.select(nodes.c.id, nodes.c.state)
        .where(nodes.c.workflow_id == workflow_id, nodes.c.state.not_in(NODE_STATES))
        .limit(1)
    ).first()
    if row is not None:
        node_state(workflow_id, row.id, row.state)


def check_ready_signatures(conn: sa.Connection, workflow_id: str) -> None:
    """Every signature a resume or retry would publish decodes to an object.

    Read as text, a page at a time, before the state change commits: a bad
    one refuses the change instead of failing half way through publishing.
    """
    text = sa.type_coerce(nodes.c.signature, sa.Text).label("text")
    query = (
        sa.select(nodes.c.id, text)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.waiting == 0,
            nodes.c.kind == NodeKind.TASK,
            nodes.c.state == NodeState.PENDING,
        )
        .execution_options(yield_per=PAGE)
    )
    with conn.execute(query) as rows:  # closes the server-side cursor on a raise
        for row in rows:
            value = _decoded(workflow_id, row.id, "signature", row.text)
            signature(workflow_id, row.id, value)


def locate(
    conn: sa.Connection, workflow_id: str | None, skip: Collection[str] = ()
) -> CorruptRecord | None:
    """The first stored value of the workflow (any, if None) that does not decode.

    Workflows in ``skip`` (known to be unreadable already) are passed over.

    Every JSON and exact-text column of its nodes, their attempts and the
    workflow row, read again as raw text; the nodes' signatures first, as
    they are what a recovery pass reads of every workflow at once.
    """
    places = (
        (nodes, nodes.c.workflow_id, nodes.c.id, ("signature",)),
        (nodes, nodes.c.workflow_id, nodes.c.id, None),
        (attempts, attempts.c.workflow_id, attempts.c.node_id, None),
        (workflows, workflows.c.id, sa.null(), None),
    )
    for table, owner, node, only in places:
        found = _first_undecodable(conn, table, owner, node, only, workflow_id, skip)
        if found is not None:
            return found
    return None


def names_corruption(
    fn: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """A store method whose read of an undecodable value names where it is.

    The method's ``workflow_id`` argument, when it has one, narrows the
    search, and its ``skip`` leaves workflows out; an error ``locate`` cannot
    pin down is raised as it was.
    """
    takes = inspect.signature(fn)

    def named(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(store, *args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, CorruptRecord):
                raise
            given = takes.bind_partial(store, *args, **kwargs).arguments
            workflow_id, skip = given.get("workflow_id"), given.get("skip", ())
            read_only = store.db.connect().execution_options(celeriac_read_only=True)
            with read_only as conn, conn.begin():
                found = locate(conn, workflow_id, skip)
            if found is None:
                raise
            raise found from exc

    functools.update_wrapper(named, fn)
    return named


def _decoded(workflow_id: str, node_id: str | None, column: str, text: Any) -> Any:
    try:
        return None if text is None else decode(text)
    except ValueError:
        raise CorruptRecord(workflow_id, node_id, column, "is not JSON") from None


def _first_undecodable(
    conn: sa.Connection,
    table: sa.Table,
    owner: sa.ColumnElement[Any],
    node: sa.ColumnElement[Any],
    only: tuple[str, ...] | None,
    workflow_id: str | None,
    skip: Collection[str],
) -> CorruptRecord | None:
    """The first value of ``table`` (of its columns ``only``) not read back."""
    readers = {
        column.name: column.type
        for column in table.c
        if isinstance(column.type, ExactJson | ExactText)
        and (only is None or column.name in only)
    }
    raw = [sa.type_coerce(table.c[name], sa.Text) for name in readers]
    query = sa.select(owner, node, *raw).execution_options(yield_per=PAGE)
    if workflow_id is not None:
        query = query.where(owner == workflow_id)
    if skip:
        query = query.where(owner.not_in(skip))
    with conn.execute(query) as rows:
        for row in rows:
            for (name, reader), text in zip(readers.items(), row[2:], strict=True):
                try:
                    reader.process_result_value(text, conn.dialect)
                except ValueError:
                    json = isinstance(reader, ExactJson)
                    problem = "is not JSON" if json else "cannot be read"
                    return CorruptRecord(row[0], row[1], name, problem)
    return None
