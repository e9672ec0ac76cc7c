"""Publishing nodes to the broker, and running the errbacks Celery runs inline."""

from __future__ import annotations

import logging
import uuid
from traceback import format_exc

from celery.app.task import Context

from celeriac.engine import scheduler
from celeriac.engine.errbacks import ErrbackArguments, rebuilt_arguments, takes_request
from celeriac.engine.node_request import TRACEBACK_LIMIT
from celeriac.engine.outcomes import Outcomes, without_nul
from celeriac.records import Claim, Delivery, Dispatch, delivery_key
from celeriac.states import NodeKind

logger = logging.getLogger("celeriac.engine")


class Publishing(Outcomes):
    """Hands dispatched nodes to the broker; a refused one fails as in Celery."""

    def _publish(
        self, dispatch: list[Dispatch], arguments: ErrbackArguments | None = None
    ) -> Delivery:
        """Publish nodes; errbacks taking a request run here (``arguments``)."""
        inline = [
            d
            for d in dispatch
            if d.kind == NodeKind.ERRBACK and takes_request(self.app, d.signature)
        ]
        delivery = self._send([d for d in dispatch if d not in inline])
        for errback in inline:
            self._run_inline_errback(errback, arguments)
        return delivery

    def _send(self, dispatch: list[Dispatch]) -> Delivery:
        published = scheduler.publish(self.app, dispatch)
        for refused, exc in published.refused:
            logger.warning("node %s cannot be sent: %s", refused.node_id, exc)
            outcome = self._store.record_unsendable(
                refused.workflow_id, refused.node_id, type(exc).__name__, str(exc)
            )
            request = Context(id=refused.node_id, task=refused.signature["task"])
            self._after_failure(
                refused.workflow_id,
                refused.node_id,
                refused.kind,
                outcome,
                exc,
                request,
                None,
            )
        unsent, failed = published.unsent, len(published.refused)
        return Delivery(len(dispatch) - unsent - failed, unsent, failed)

    def _run_inline_errback(
        self, dispatch: Dispatch, arguments: ErrbackArguments | None
    ) -> None:
        """Run an errback that takes ``(request, exc, traceback)`` here.

        As Celery does, in the process that handles the failure: the worker
        that recorded it, or the recovery pass that found the errback
        QUEUED. ``arguments`` None: rebuilt from the stored failure.
        """
        hostname = getattr(getattr(arguments, "request", None), "hostname", None)
        lease = self._liveness.lease(hostname)
        delivery = delivery_key(dispatch.attempt_base, 0)
        claim, number = self._store.claim_node(
            dispatch.workflow_id, dispatch.node_id, delivery, lease, uuid.uuid4().hex
        )
        if claim is Claim.RUN:
            self._call_errback(dispatch, number, arguments)

    def _call_errback(
        self, dispatch: Dispatch, number: int, arguments: ErrbackArguments | None
    ) -> None:
        """Call a claimed errback (attempt ``number``) and record its outcome."""
        node_id, workflow_id = dispatch.node_id, dispatch.workflow_id
        errback = self.app.signature(dispatch.signature)
        try:
            if arguments is None:
                arguments = self._stored_failure(dispatch)
            result = errback(arguments.request, arguments.exc, arguments.traceback)
        except Exception as error:
            raised = (type(error).__name__, str(error), format_exc())
            outcome = self._recorded(
                workflow_id,
                node_id,
                number,
                NodeKind.ERRBACK,
                lambda: self._store.record_failure(
                    workflow_id,
                    node_id,
                    number,
                    raised[0],
                    raised[1],
                    without_nul(raised[2][-TRACEBACK_LIMIT:]),
                ),
            )
            if outcome is not None:
                self._after_failure(
                    workflow_id, node_id, NodeKind.ERRBACK, outcome, error, None, None
                )
        else:
            outcome = self._recorded(
                workflow_id,
                node_id,
                number,
                NodeKind.ERRBACK,
                lambda: self._store.record_success(
                    workflow_id, node_id, number, result
                ),
            )
            if outcome is not None:
                self._after(workflow_id, outcome)

    def _stored_failure(self, dispatch: Dispatch) -> ErrbackArguments:
        """An errback's ``(request, exc, traceback)``, rebuilt from the database."""
        failed_id = str(dispatch.inputs[0]) if dispatch.inputs else ""
        failed = self._store.failed_call(dispatch.workflow_id, failed_id)
        if failed is None:
            raise LookupError(
                f"errback {dispatch.node_id}: the failure of node {failed_id} "
                "it handles is no longer stored"
            )
        return rebuilt_arguments(failed)
