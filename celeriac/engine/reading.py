"""The engine's reads: stored workflows listed, counted, and looked up by id."""

from __future__ import annotations

from datetime import datetime

from celeriac.engine.control import Control
from celeriac.engine.handle import Workflow
from celeriac.engine.ids import complete_id
from celeriac.errors import WorkflowNotFound
from celeriac.records import WorkflowCursor, WorkflowFilter, WorkflowRecord


class Reading(Control):
    """Find stored workflows: one by id, or pages and counts of those matching."""

    def list_workflows(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        key: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
    ) -> list[WorkflowRecord]:
        """Stored workflows, newest first, with the filters given.

        ``created_after`` keeps those created at or after it,
        ``created_before`` those created before it (aware datetimes);
        ``key``, the one submitted with that key.
        """
        return self._store.list_workflows(
            state=state,
            name=name,
            key=key,
            limit=limit,
            created_after=created_after,
            created_before=created_before,
        )

    def workflow_page(
        self,
        where: WorkflowFilter | None = None,
        limit: int = 50,
        after: WorkflowCursor | None = None,
    ) -> list[WorkflowRecord]:
        """The newest ``limit`` workflows matching ``where``, below ``after``.

        A keyset page: the next one starts after the last workflow of this
        one (``WorkflowCursor(record.created_at, record.id)``), and costs
        what the first does however deep it is.
        """
        return self._store.workflow_page(where or WorkflowFilter(), limit, after)

    def count_workflows(self, where: WorkflowFilter | None = None) -> dict[str, int]:
        """The workflows matching ``where``, counted by state.

        The filter's own ``state`` is ignored: every state is counted (a
        state no workflow is in is left out).
        """
        return self._store.count_workflow_states(where or WorkflowFilter())

    def matching_workflow_ids(self, where: WorkflowFilter, limit: int) -> list[str]:
        """The ids of at most ``limit`` workflows matching ``where``, newest first."""
        return self._store.matching_workflow_ids(where, limit)

    def workflow(self, workflow_id: str) -> Workflow:
        """The stored workflow ``workflow_id``, or the one whose id starts so.

        A short id (its first 8 or more characters, as ``celeriac show``
        prints it) will do when only one workflow's id starts with it.

        Raises:
            WorkflowNotFound: no workflow has this id, or starts with it.
            AmbiguousWorkflowId: several workflows' ids start with it.
        """
        try:
            record = self._store.get_workflow(workflow_id)
        except WorkflowNotFound:
            record = self._store.get_workflow(complete_id(self._store, workflow_id))
        return Workflow(self, record.id, record.name)
