"""A task that replaced itself (``Task.replace``): its replacement linked in.

The replacement's nodes and edges go into the running workflow in the
transaction that records the replacement. The replaced node stays where it
stood, REPLACED, and waits for the node holding its replacement's result:
it completes in the database with that result (``releases.release``), so
its successors, joins and errbacks stay wired as they were. Nodes of the
replacement that nothing waits for (callbacks) are waited for by END.
"""

from __future__ import annotations

import sqlalchemy as sa

from celeriac.records import Dispatch, NewEdge, NewReplacement, Outcome
from celeriac.states import (
    AttemptState,
    NodeKind,
    NodeState,
    WorkflowState,
    may_start,
)
from celeriac.storage import (
    attempt_ends,
    claims,
    event_log,
    moves,
    releases,
    task_ids,
    workflow_steps,
)
from celeriac.storage.database import retry_transient
from celeriac.storage.dispatches import DISPATCH_COLUMNS, load_dispatches
from celeriac.storage.graph_rows import insert_graph
from celeriac.storage.rows import now
from celeriac.storage.schema import edges, nodes
from celeriac.storage.transactions import StoreBase

_N = NodeState


class ReplaceStore(StoreBase):
    """Replacements of running task nodes by the canvases they return."""

    @retry_transient
    def replaced_node(
        self, workflow_id: str, node_id: str
    ) -> tuple[str | None, list[str]]:
        """The node's label, and the ERRBACK nodes that run if it fails."""
        with self._read() as conn:
            label = conn.execute(
                sa.select(nodes.c.label).where(
                    nodes.c.workflow_id == workflow_id, nodes.c.id == node_id
                )
            ).scalar_one_or_none()
            errbacks = conn.execute(
                sa.select(edges.c.child_id)
                .where(
                    edges.c.workflow_id == workflow_id,
                    edges.c.parent_id == node_id,
                    edges.c.on_error.is_(True),
                )
                .order_by(edges.c.position)
            ).scalars()
            return label, list(errbacks)

    @retry_transient
    def record_replacement(
        self, workflow_id: str, node_id: str, number: int, new: NewReplacement
    ) -> Outcome:
        """Replace running attempt ``number`` of a task node by ``new``.

        Refused (not ``recorded``) unless that attempt still runs: a node, or
        one attempt of it, is replaced once. In a cancelled workflow the node
        is CANCELLED instead, and nothing is stored. The replacement's first
        nodes are released as a submit's are; a replay of a transaction that
        committed unseen offers those not started yet again.
        """
        at = now()
        with self._write() as conn:
            state = workflow_steps.workflow_state(conn, workflow_id, lock="share")
            node = claims.lock_node(conn, workflow_id, node_id)
            if (
                node is not None
                and node.state == _N.REPLACED
                and node.current_attempt == number
            ):
                return Outcome(True, _queued(conn, workflow_id, node_id), state)
            if (
                node is None
                or node.kind != NodeKind.TASK
                or node.state != _N.RUNNING
                or node.current_attempt != number
            ):
                return Outcome(False, [], state)
            attempt_ends.finish_attempt(
                conn, workflow_id, node_id, number, AttemptState.REPLACED, at
            )
            if state == WorkflowState.CANCELLED:  # its body outran the cancel
                back = (_N.RUNNING,)
                moves.set_node_state(
                    conn, workflow_id, [node_id], back, _N.CANCELLED, at
                )
                return Outcome(False, [], state)
            task_ids.refuse_taken(conn, new.frozen_ids)
            offset = conn.execute(
                sa.select(sa.func.max(nodes.c.position) + 1).where(
                    nodes.c.workflow_id == workflow_id
                )
            ).scalar_one()
            links = [NewEdge(new.result_node_id, node_id, 0)]
            if new.leaves:
                end = _end_node(conn, workflow_id, len(new.leaves))
                links += [
                    NewEdge(leaf, end, offset + index)
                    for index, leaf in enumerate(new.leaves)
                ]
            roots = insert_graph(
                conn,
                workflow_id,
                new.nodes,
                [*new.edges, *links],
                at,
                offset,
                replaces=node_id,
                queue_roots=may_start(NodeKind.TASK, state),
            )
            conn.execute(
                sa.update(nodes)
                .where(nodes.c.workflow_id == workflow_id, nodes.c.id == node_id)
                .values(state=_N.REPLACED, waiting=1)
            )
            event_log.add_event(conn, workflow_id, node_id, _N.RUNNING, _N.REPLACED, at)
            dispatch, finished = releases.release_roots(
                conn, workflow_id, state, roots, at
            )
        pausing = state == WorkflowState.REQUESTING_PAUSE
        return Outcome(True, dispatch, state, finished, settle=pausing)


def _queued(conn: sa.Connection, workflow_id: str, node_id: str) -> list[Dispatch]:
    """The dispatches of the nodes replacing ``node_id`` queued, never started."""
    rows = conn.execute(
        sa.select(*DISPATCH_COLUMNS, nodes.c.attempt_base.label("base"))
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state == _N.QUEUED,
            nodes.c.replaces == node_id,
            nodes.c.current_attempt == nodes.c.attempt_base,
        )
        .order_by(nodes.c.position)
    ).all()
    return load_dispatches(conn, rows) if rows else []


def _end_node(conn: sa.Connection, workflow_id: str, more: int) -> str:
    """The workflow's END node, made to wait for ``more`` parents more."""
    end = conn.execute(
        sa.update(nodes)
        .where(
            nodes.c.workflow_id == workflow_id,
            nodes.c.state == _N.PENDING,
            nodes.c.kind == NodeKind.END,
        )
        .values(waiting=nodes.c.waiting + more)
        .returning(nodes.c.id)
    ).scalar_one()
    return str(end)
