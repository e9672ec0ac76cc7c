"""Upkeep: the recovery pass, and purging what finished long ago."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from celeriac.engine.publishing import Publishing
from celeriac.errors import CorruptRecord
from celeriac.records import Delivery, Dispatch
from celeriac.storage.retention_policy import Purged, Retention
from celeriac.storage.rows import now

logger = logging.getLogger("celeriac.engine")

#: Claims the next batch of nodes to publish again, skipping some workflows.
Requeue = Callable[[Collection[str]], list[Dispatch]]


class Upkeep(Publishing):
    """Recover what a crash left behind; purge old workflows."""

    #: workflows recovery leaves alone: their rows cannot be read
    _unreadable: set[str]

    def recover(self, broker_emptied: bool = False) -> Delivery:
        """One recovery pass: publish again what a crash left behind.

        Publishes QUEUED nodes that did not start within the
        ``recovery_delay`` option (seconds, default 60), or every QUEUED
        node when ``broker_emptied`` (the broker lost its messages), and
        nodes RUNNING on a worker that stopped heartbeating, and applies the
        state changes a process died before making (a task's failure once
        ``recovery_delay`` old). Nodes are claimed and
        published a batch at a time, each batch by one of the processes
        running a pass at once; a workflow whose state change fails is
        logged and skipped. Returns how many nodes were published again, and
        how many stay QUEUED because the broker could not be reached.
        """
        delay = 0.0 if broker_emptied else self.recovery_delay
        since = now()
        requeues: tuple[Requeue, ...] = (
            lambda skip: self._store.requeue_stale(delay, since, skip=skip),
            lambda skip: self._store.requeue_lost(self._liveness.timeout, skip=skip),
        )
        delivery = Delivery()
        for requeue in requeues:
            delivery += self._publish_again(requeue)
        self._settle_unsettled(since - timedelta(seconds=self.recovery_delay))
        return delivery

    def _publish_again(self, requeue: Requeue) -> Delivery:
        """Publish ``requeue``'s batches until none is left or the broker is down."""
        delivery = Delivery()
        while batch := self._readable_batch(requeue):
            logger.warning("recovery: publishing %d nodes again", len(batch))
            sent = self._publish(batch)
            delivery += sent
            if sent.broker_down:  # the rest waits for a later pass
                break
        return delivery

    def _settle_unsettled(self, failed_before: datetime) -> None:
        """Make the state changes a process died before making.

        A failure at ``failed_before`` or later is left to its process.
        """
        unsettled = self._store.unsettled_workflows(failed_before)
        for workflow_id, trigger, failure in unsettled:
            logger.warning("recovery: %s workflow %s", trigger, workflow_id)
            try:
                self._transition_quietly(workflow_id, trigger, failure)
            except Exception:  # one workflow never blocks the others
                logger.exception(
                    "recovery: %s of workflow %s failed; skipped", trigger, workflow_id
                )

    def _readable_batch(self, requeue: Requeue) -> list[Dispatch]:
        """The next batch to publish again, without the workflows it cannot read.

        A workflow whose rows do not decode is logged once and left alone
        by this engine's passes from then on; the others are recovered.
        """
        while True:
            try:
                return requeue(frozenset(self._unreadable))
            except CorruptRecord as exc:
                if exc.workflow_id in self._unreadable:
                    raise  # skipped, and still in the way: nothing to learn
                self._unreadable.add(exc.workflow_id)
                logger.error("recovery: skipping workflow %s: %s", exc.workflow_id, exc)

    def purge(
        self,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        *,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
    ) -> int:
        """Delete workflows that finished more than ``older_than`` ago.

        Each goes with everything that belongs to it (nodes, edges,
        attempts, events), in short transactions. ``states`` narrows the
        purge to some of COMPLETED, FAILED and CANCELLED (the default: all
        three; any other state is refused with ``ValueError``), ``name`` to
        the workflows of that name. A workflow that has not finished is
        never purged. Event rows older than ``events_older_than`` and the
        rows of workers silent for ``workers_older_than`` go too (both
        default to ``older_than``). ``dry_run`` deletes nothing. Returns how
        many workflows were (or would be) deleted; :meth:`purge_counts`
        tells the rest.
        """
        return self.purge_counts(
            older_than,
            states,
            name,
            dry_run,
            events_older_than=events_older_than,
            workers_older_than=workers_older_than,
        ).workflows

    def purge_counts(
        self,
        older_than: timedelta,
        states: Collection[str] | None = None,
        name: str | None = None,
        dry_run: bool = False,
        *,
        events_older_than: timedelta | None = None,
        workers_older_than: timedelta | None = None,
    ) -> Purged:
        """:meth:`purge`, returning what it deleted (or would delete).

        Counts of workflows, nodes, events and worker rows.
        """
        retention = Retention.of(
            now(),
            older_than,
            states,
            name,
            events_older_than,
            workers_older_than,
            worker_timeout=timedelta(seconds=self._liveness.timeout),
        )
        return self._store.purge(retention, dry_run)
