"""Workflow state changes: what users ask for, and the engine's own triggers."""

from __future__ import annotations

import logging
import uuid
from contextlib import suppress

from celeriac.engine.base import EngineBase
from celeriac.engine.machine import decider
from celeriac.errors import InvalidTransition
from celeriac.records import Delivery, Failure, TransitionResult
from celeriac.states import TERMINAL_WORKFLOW_STATES

logger = logging.getLogger("celeriac.engine")

#: The state changes a user asks for; each call's transaction is replayable.
USER_TRIGGERS = frozenset({"pause", "resume", "cancel", "retry"})


class Control(EngineBase):
    """Pause, resume, cancel and retry workflows; settle and fail them."""

    def pause(self, workflow_id: str, *, by: str | None = None) -> None:
        """Stop dispatching; the workflow is PAUSED once nothing runs.

        ``by`` (here and for resume, cancel, retry) names who asked, in the
        event that records the change.
        """
        self._transition(workflow_id, "pause", by=by)

    def resume(self, workflow_id: str, *, by: str | None = None) -> Delivery:
        """Dispatch every ready node of a pausing or paused workflow.

        Returns how many nodes were published, and how many stay QUEUED
        because the broker could not be reached.
        """
        return self._transition(workflow_id, "resume", by=by)[1]

    def cancel(
        self, workflow_id: str, terminate: bool = False, *, by: str | None = None
    ) -> Delivery:
        """Cancel: nothing starts again; running tasks are revoked.

        Returns how many running tasks were revoked through the broker, and
        how many could not be.
        """
        result, _ = self._transition(workflow_id, "cancel", by=by)
        if result is None or not result.revoke:
            return Delivery()
        return self._revoke(result.revoke, terminate)

    def retry(self, workflow_id: str, *, by: str | None = None) -> Delivery:
        """Continue a FAILED workflow; succeeded nodes do not run again.

        Returns what was published, as ``resume()`` does.
        """
        return self._transition(workflow_id, "retry", by=by)[1]

    def settle(self, workflow_id: str) -> None:
        """PAUSED if the workflow is pausing and nothing runs any more."""
        self._transition_quietly(workflow_id, "settle")

    def _transition(
        self,
        workflow_id: str,
        trigger: str,
        error: Failure | None = None,
        by: str | None = None,
    ) -> tuple[TransitionResult | None, Delivery]:
        # a call's own token: a replay of its transaction finds what it did
        token = uuid.uuid4().hex if trigger in USER_TRIGGERS else None
        result = self._store.transition_workflow(
            workflow_id, trigger, decider(workflow_id), error, token, by
        )
        if result is None:
            return None, Delivery()
        if result.dest in TERMINAL_WORKFLOW_STATES:
            self._finishes.announce()
        delivery = self._publish(result.dispatch)
        return result, delivery + self._publish_queued(workflow_id, result)

    def _publish_queued(self, workflow_id: str, result: TransitionResult) -> Delivery:
        """Publish the nodes a transition queued (resume, retry), a page at a time.

        A million ready nodes are never all in memory: each page is read,
        published and let go. A process that dies half way leaves the rest
        QUEUED, for the recovery pass.
        """
        delivery = Delivery()
        after: int | None = -1
        while result.queued_at is not None and after is not None:
            page, after = self._store.queued_page(workflow_id, result.queued_at, after)
            delivery += self._publish(page)
        return delivery

    def _transition_quietly(
        self,
        workflow_id: str,
        trigger: str,
        error: Failure | None = None,
    ) -> None:
        """Internal triggers may lose a race (a cancel, a resume): that is fine."""
        with suppress(InvalidTransition):
            self._transition(workflow_id, trigger, error)

    def _revoke(self, task_ids: list[str], terminate: bool) -> Delivery:
        try:
            self.app.control.revoke(task_ids, terminate=terminate)
        except Exception as exc:  # the state is committed; revoking is best effort
            logger.warning(
                "could not revoke %d tasks: %s: %s",
                len(task_ids),
                type(exc).__name__,
                exc,
            )
            return Delivery(unsent=len(task_ids))
        return Delivery(sent=len(task_ids))
