"""The engine's reads: stored workflows listed, and looked up by id."""

from __future__ import annotations

from datetime import datetime

from celeriac.engine.control import Control
from celeriac.engine.handle import Workflow
from celeriac.engine.ids import complete_id
from celeriac.errors import WorkflowNotFound
from celeriac.records import WorkflowRecord


class Reading(Control):
    """Find stored workflows: one by id, or those matching filters."""

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
        return self.store.list_workflows(
            state=state,
            name=name,
            key=key,
            limit=limit,
            created_after=created_after,
            created_before=created_before,
        )

    def workflow(self, workflow_id: str) -> Workflow:
        """The stored workflow ``workflow_id``, or the one whose id starts so.

        A short id (its first 8 or more characters, as ``celeriac show``
        prints it) will do when only one workflow's id starts with it.

        Raises:
            WorkflowNotFound: no workflow has this id, or starts with it.
            AmbiguousWorkflowId: several workflows' ids start with it.
        """
        try:
            record = self.store.get_workflow(workflow_id)
        except WorkflowNotFound:
            record = self.store.get_workflow(complete_id(self.store, workflow_id))
        return Workflow(self, record.id, record.name)
