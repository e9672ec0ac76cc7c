"""Storing a submitted workflow: its row, its edges, nodes and first dispatches.

The canvas is walked inside the transaction, each edge stored as the walk
makes it: on PostgreSQL the server stores them while the walk goes on.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from celeriac.records import (
    NewWorkflow,
    Outcome,
)
from celeriac.states import NodeState, WorkflowState
from celeriac.storage import (
    event_log,
    releases,
    replays,
    statistics,
    task_ids,
)
from celeriac.storage.database import first_line, retry_transient
from celeriac.storage.graph_rows import edge_writer, insert_nodes
from celeriac.storage.rows import now
from celeriac.storage.schema import workflows
from celeriac.storage.transactions import StoreBase
from celeriac.storage.values import Encoded

_N = NodeState
_W = WorkflowState

logger = logging.getLogger("celeriac.storage")


class SubmitStore(StoreBase):
    """Submit: a workflow and its DAG in one transaction."""

    #: the tables a submit fills that have statistics, or were analyzed by
    #: this store (``statistics``)
    _tables_settled: frozenset[str] = frozenset()

    @retry_transient
    def insert_workflow(self, new: NewWorkflow) -> Outcome:
        """Store a workflow, walking its canvas, and mark its first nodes QUEUED.

        What the walk raises (``UnknownTask``, ``InvalidCanvas``) is raised
        as it is, with nothing stored.

        The outcome is ``finished`` for a canvas without any task (an empty
        group): its END node completes right away. A replay of a submit that
        committed offers its first nodes again. When ``new.key`` already
        names a workflow (a racing submit included), nothing is stored and
        the outcome is not ``recorded``; ``SubmitKeyReused`` if that
        workflow has another canvas.
        """
        # only a key is matched against the canvas stored under it
        digest = None if new.key is None else replays.fingerprint(new)
        try:
            return self._insert_workflow(new, digest)
        except sa.exc.IntegrityError:
            # this call's first try committed unseen (its id is stored), or
            # a racing submit of the key did
            with self._read() as conn:
                stored = replays.stored_submission(conn, new, digest)
            if stored is None:
                raise
            return stored

    def analyze_new_tables(self) -> None:
        """Give PostgreSQL's planner its first statistics (``statistics``).

        Run after each submit and each replacement (``Task.replace``),
        until each table they fill has statistics or was analyzed by this
        store: then it asks nothing more. An error is logged, never
        raised: the workflow is stored, and the next submit tries again.
        """
        waiting = set(statistics.SUBMITTED) - self._tables_settled
        if not waiting:
            return
        try:
            with self.db.begin() as conn:
                settled = statistics.analyze_new_tables(conn, waiting)
        except sa.exc.DBAPIError as exc:
            logger.warning("could not analyze the new tables: %s", first_line(exc))
            return
        self._tables_settled = self._tables_settled | settled

    def _insert_workflow(self, new: NewWorkflow, digest: str | None) -> Outcome:
        at = now()
        with self._write() as conn:
            # Without a key, only a replay finds anything, and its insert of
            # the workflow's id fails: no look-up first (a round trip).
            stored = (
                None
                if new.key is None
                else replays.stored_submission(conn, new, digest)
            )
            if stored is not None:
                return stored
            conn.execute(
                workflows.insert(),
                {
                    "id": new.id,
                    "name": new.name,
                    "state": _W.IN_PROGRESS,
                    "canvas": new.canvas
                    if new.canvas_text is None
                    else Encoded(new.canvas_text),
                    "args": new.args,
                    "kwargs": new.kwargs,
                    "metadata": new.metadata,
                    "submit_key": new.key,
                    "fingerprint": digest,
                    # known once the walk is done; the row comes first for
                    # the edges' foreign key
                    "result_node_id": "",
                    "on_failure": new.on_failure,
                    "created_at": at,
                    "updated_at": at,
                },
            )
            with edge_writer(conn, new.id) as write_edge:
                graph = new.walk(write_edge)
            conn.execute(
                workflows.update()
                .where(workflows.c.id == new.id)
                .values(result_node_id=graph.result_node_id)
            )
            task_ids.refuse_taken(conn, graph.frozen_ids)
            roots = insert_nodes(conn, new.id, graph.nodes, at, queue_roots=True)
            event_log.add_event(conn, new.id, None, None, _W.IN_PROGRESS, at)
            dispatch, finished = releases.release_roots(
                conn, new.id, _W.IN_PROGRESS, roots, at
            )
        return Outcome(True, dispatch, _W.IN_PROGRESS, finished)
