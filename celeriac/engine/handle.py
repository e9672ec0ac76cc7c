"""Workflow: the handle users hold on one stored workflow."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from celeriac.engine.exceptions import raised_by
from celeriac.errors import CeleriacError, WorkflowCancelled, WorkflowFailed
from celeriac.outlines import Clustered, Outline
from celeriac.records import (
    Delivery,
    Node,
    Progress,
    WorkflowRecord,
)
from celeriac.states import NodeKind, NodeState, WorkflowState
from celeriac.storage.batches import PAGE

if TYPE_CHECKING:
    from celeriac.engine.control import Control

#: only a node that ran to success is done: a cancelled or skipped one never
#: ran (a cancelled or failed workflow's bar stops where the work stopped)
_DONE = (NodeState.SUCCEEDED,)


class Workflow:
    """A stored workflow. Every property and method reads the database afresh."""

    def __init__(self, engine: Control, workflow_id: str, name: str | None) -> None:
        self._engine = engine
        self.id = workflow_id
        self.name = name

    def __repr__(self) -> str:
        return f"<Workflow {self.id} {self.name or ''}>".replace(" >", ">")

    @property
    def state(self) -> WorkflowState:
        """The workflow's current state (equal to its name: ``"PAUSED"``)."""
        return WorkflowState(self._engine._store.workflow_state(self.id))

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the workflow to finish and return the canvas's result.

        A failed workflow raises its first failure: an instance of the
        failing task's own exception class that is a ``WorkflowFailed`` as
        well (plain ``WorkflowFailed`` when the class cannot be rebuilt, see
        ``engine/exceptions.py``). With ``propagate=False`` the exception of
        a failed or cancelled workflow is returned instead, as Celery's
        ``AsyncResult.get(propagate=False)`` returns it.

        Raises:
            WorkflowFailed: a node failed for good.
            WorkflowCancelled: the workflow was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        finishes = self._engine._finishes
        while True:
            mark = finishes.mark()
            record = self._engine._store.get_workflow(self.id)
            if record.state == WorkflowState.COMPLETED:
                return record.result
            ended = _ending_error(record)
            if ended is not None:
                if propagate:
                    raise ended
                return ended
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"workflow {self.id} still {record.state} after {timeout} s"
                )
            remaining = None if deadline is None else deadline - time.monotonic()
            # a notice of a finish wakes it early; polling covers lost notices
            finishes.wait(
                mark,
                max(0.0, min(delay, remaining if remaining is not None else delay)),
            )
            delay = min(delay * 1.5, 0.1)

    def pause(self) -> None:
        """Same as ``engine.pause(self.id)``."""
        self._engine.pause(self.id)

    def resume(self) -> Delivery:
        """Same as ``engine.resume(self.id)``."""
        return self._engine.resume(self.id)

    def cancel(self, terminate: bool = False) -> Delivery:
        """Same as ``engine.cancel(self.id, terminate)``."""
        return self._engine.cancel(self.id, terminate)

    def retry(self) -> Delivery:
        """Same as ``engine.retry(self.id)``."""
        return self._engine.retry(self.id)

    def progress(self, label: str | None = None) -> Progress:
        """How far the workflow got, counting its task nodes.

        A running node counts by the share of its work it reported
        (``celeriac.report_progress``): ``fraction`` is ``(done + partial) /
        total``. ``label`` limits the count to the part of the canvas whose
        signatures carry the option ``celeriac_label=label``.
        """
        tasks, partial = self._engine._store.count_task_progress(self.id, label)
        return Progress(
            done=sum(tasks.get(state, 0) for state in _DONE),
            total=sum(tasks.values()),
            failed=tasks.get(NodeState.FAILED, 0),
            running=tasks.get(NodeState.RUNNING, 0),
            partial=partial,
        )

    def record(self) -> WorkflowRecord:
        """The stored workflow: name, key, state, times, error and result."""
        return self._engine._store.get_workflow(self.id)

    def nodes(self) -> list[Node]:
        """The workflow's task nodes (and errbacks) in canvas order."""
        return self._engine._store.list_nodes(self.id)

    def graph_nodes(self) -> list[Node]:
        """Every node of the workflow's drawn DAG, in canvas order.

        The task and errback nodes of :meth:`nodes`, and the JOIN nodes
        where a group's results meet (each node's ``parents`` gives the
        edges). The END node every workflow has after its last nodes is
        left out.
        """
        nodes = self._engine._store.list_nodes(self.id, bookkeeping=True)
        return [node for node in nodes if node.kind != NodeKind.END]

    def iter_nodes(self) -> Iterator[Node]:
        """The same nodes as ``nodes()``, read a page (1,000 nodes) at a time.

        Memory and each read stay small whatever the workflow's size; each
        page is read afresh, so a node that changes state while you iterate
        shows the state it had when its page was read.
        """
        after: int | None = -1
        while after is not None:
            page, after = self.node_page(after)
            yield from page

    def node_page(
        self, after: int = -1, limit: int = PAGE
    ) -> tuple[list[Node], int | None]:
        """Up to ``limit`` of the nodes of ``nodes()`` past canvas position ``after``.

        Returns them with the position the next page starts after (pass it
        as ``after``), None after the last page. Each page is one short read.
        """
        return self._engine._store.node_page(self.id, after, limit)

    def node_with_errbacks(self, node_id: str) -> tuple[Node, list[Node]] | None:
        """The node ``node_id`` and the errbacks guarding it; None: no such node."""
        return self._engine._store.node_with_errbacks(self.id, node_id)

    def node_arguments(self, node_id: str) -> tuple[list[Any], dict[str, Any]] | None:
        """The positional and keyword arguments the node's signature carries.

        ``submit()``'s arguments are there for the first nodes; a node after
        another gets its parent's result before them when it runs, unless its
        signature is immutable, as in Celery. Reads that node's row alone.
        None: no such node, or a JOIN or END node, which calls no task.
        """
        return self._engine._store.node_arguments(self.id, node_id)

    def node_counts(self) -> dict[tuple[str, str], int]:
        """How many nodes there are of each ``(kind, state)``, every kind counted."""
        return self._engine._store.count_nodes(self.id)

    def outline(self, most_nodes: int, most_clusters: int) -> Outline | Clustered:
        """What a drawing of the DAG needs: ids, tasks, states, edges; no values.

        An ``Outline`` of every drawn node (TASK, ERRBACK, JOIN) and edge up
        to ``most_nodes`` nodes; past that, a ``Clustered`` count of them by
        first parent, task, kind and state (by task alone past
        ``most_clusters`` clusters).
        """
        return self._engine._store.outline(self.id, most_nodes, most_clusters)


def _ending_error(record: WorkflowRecord) -> CeleriacError | None:
    """What a failed or cancelled workflow raises; None for any other state."""
    if record.state == WorkflowState.FAILED:
        failed = WorkflowFailed(
            record.id,
            record.failed_node_id,
            record.exc_type or "",
            record.exc_message or "",
        )
        return raised_by(failed, record.exc_class, record.exc_args)
    if record.state == WorkflowState.CANCELLED:
        return WorkflowCancelled(record.id)
    return None
