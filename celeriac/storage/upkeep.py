"""What keeps a workflow moving after a crash: heartbeats and recovery scans."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa

from celeriac.records import (
    Dispatch,
    Failure,
)
from celeriac.states import (
    NodeState,
    WorkflowState,
)
from celeriac.storage import (
    recovery,
)
from celeriac.storage.batches import PAGE
from celeriac.storage.database import retry_transient
from celeriac.storage.integrity import names_corruption
from celeriac.storage.rows import now
from celeriac.storage.schema import workers
from celeriac.storage.transactions import StoreBase

_N = NodeState
_W = WorkflowState


class UpkeepStore(StoreBase):
    """Heartbeats of workers, and the scans recovery makes."""

    @retry_transient
    def heartbeat(self, worker_id: str, hostname: str | None, pid: int) -> None:
        """Renew a worker process's lease on the attempts it runs."""
        at = now()
        with self._write() as conn:
            renewed = conn.execute(
                sa.update(workers)
                .where(workers.c.id == worker_id)
                .values(heartbeat_at=at)
            ).rowcount
            if not renewed:
                conn.execute(
                    workers.insert(),
                    {
                        "id": worker_id,
                        "hostname": hostname,
                        "pid": pid,
                        "started_at": at,
                        "heartbeat_at": at,
                    },
                )

    @names_corruption
    @retry_transient
    def requeue_stale(
        self,
        older_than: float,
        since: datetime | None = None,
        limit: int = PAGE,
        skip: Collection[str] = (),
    ) -> list[Dispatch]:
        """A batch of nodes ``older_than`` seconds overdue at ``since``.

        To publish again: QUEUED nodes not started since they were queued,
        and RETRYING nodes whose Celery retry was due that long ago, up to
        ``limit`` of each; a node published again waits twice as long each
        time. A pass calls it again, with the same ``since`` (its start,
        default now), until it returns nothing: each batch is claimed in its
        own short transaction, and passes running at once share the nodes.
        The nodes of the workflows in ``skip`` are left out.
        """
        at = now()
        since = since or at
        delay = timedelta(seconds=older_than)
        with self._write() as conn:
            stale = recovery.requeue_stale(conn, delay, since, at, limit, skip)
            return stale + recovery.requeue_retrying(
                conn, delay, since, at, limit, skip
            )

    @names_corruption
    @retry_transient
    def requeue_lost(
        self, dead_after: float, limit: int = PAGE, skip: Collection[str] = ()
    ) -> list[Dispatch]:
        """A batch of nodes RUNNING on workers silent for ``dead_after`` s.

        Up to ``limit``, to publish again; call it again until it returns
        nothing. The nodes of the workflows in ``skip`` are left out.
        """
        at = now()
        dead_before = at - timedelta(seconds=dead_after)
        with self._write() as conn:
            return recovery.requeue_lost(conn, dead_before, at, limit, skip)

    @names_corruption
    @retry_transient
    def unsettled_workflows(
        self, failed_before: datetime
    ) -> list[tuple[str, str, Failure | None]]:
        """(workflow id, trigger, failure) for workflows whose state lags behind.

        Failures at ``failed_before`` or later are left to their process.
        """
        with self._read() as conn:
            return [
                (workflow_id, trigger, recovery.first_failure(conn, workflow_id))
                for workflow_id, trigger in recovery.unsettled_workflows(
                    conn, failed_before
                )
            ]
