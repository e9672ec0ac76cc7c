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
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import sqlalchemy as sa

from celeriac.errors import CorruptRecord
from celeriac.states import NodeKind, NodeState, WorkflowState
from celeriac.storage.batches import PAGE
from celeriac.storage.schema import nodes, workflows
from celeriac.storage.values import decode

WORKFLOW_STATES = frozenset(WorkflowState)
NODE_STATES = frozenset(NodeState)
#: The value (JSON) columns, read again as text to find one that does not decode.
_WORKFLOW_VALUES = ("canvas", "args", "kwargs", "metadata", "result")
_NODE_VALUES = ("signature", "result")
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


def locate(conn: sa.Connection, workflow_id: str | None) -> CorruptRecord | None:
    """The first stored value of the workflow (any, if None) that does not decode.

    Nodes first: the values a recovery pass reads for every workflow at once
    are its nodes' signatures.
    """
    values = [sa.type_coerce(nodes.c[name], sa.Text) for name in _NODE_VALUES]
    node_query = sa.select(nodes.c.workflow_id, nodes.c.id, *values)
    if workflow_id is not None:
        node_query = node_query.where(nodes.c.workflow_id == workflow_id)
    with conn.execute(node_query.execution_options(yield_per=PAGE)) as rows:
        for row in rows:
            found = _undecodable(row.workflow_id, row.id, _NODE_VALUES, row[2:])
            if found is not None:
                return found
    columns = [sa.type_coerce(workflows.c[name], sa.Text) for name in _WORKFLOW_VALUES]
    query = sa.select(workflows.c.id, *columns)
    if workflow_id is not None:
        query = query.where(workflows.c.id == workflow_id)
    with conn.execute(query.execution_options(yield_per=PAGE)) as rows:
        for row in rows:
            found = _undecodable(row.id, None, _WORKFLOW_VALUES, row[1:])
            if found is not None:
                return found
    return None


def names_corruption(
    fn: Callable[Concatenate[S, P], R],
) -> Callable[Concatenate[S, P], R]:
    """A store method whose read of an undecodable value names where it is.

    The method's ``workflow_id`` argument, when it has one, narrows the
    search; an error ``locate`` cannot pin down is raised as it was.
    """
    takes = inspect.signature(fn)

    def named(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(store, *args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, CorruptRecord):
                raise
            given = takes.bind_partial(store, *args, **kwargs).arguments
            workflow_id = given.get("workflow_id")
            read_only = store.db.connect().execution_options(celeriac_read_only=True)
            with read_only as conn, conn.begin():
                found = locate(conn, workflow_id)
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


def _undecodable(
    workflow_id: str, node_id: str | None, names: tuple[str, ...], texts: Any
) -> CorruptRecord | None:
    for name, text in zip(names, texts, strict=True):
        try:
            _decoded(workflow_id, node_id, name, text)
        except CorruptRecord as found:
            return found
    return None
