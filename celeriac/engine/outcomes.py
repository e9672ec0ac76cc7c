"""A node's outcome recorded: its result or failure, and what follows from it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from traceback import format_exc
from typing import Any

import sqlalchemy as sa
from celery.exceptions import TaskRevokedError
from kombu.exceptions import EncodeError

from celeriac.engine.control import Control
from celeriac.engine.errbacks import ErrbackArguments, rebuilt_exception
from celeriac.engine.exceptions import failure_of
from celeriac.engine.handoff import FIRST_ATTEMPT, Offer, carry, is_running_in_place
from celeriac.engine.node_request import TRACEBACK_LIMIT, NodeRequest
from celeriac.engine.replacement import compile_replacement
from celeriac.errors import InvalidCanvas, StorageError
from celeriac.records import Delivery, Dispatch, Outcome
from celeriac.states import NodeKind
from celeriac.storage.database import first_line
from celeriac.storage.values import ResultTooLarge, check_result

logger = logging.getLogger("celeriac.engine")


class Outcomes(Control):
    """What the worker hooks call: record an outcome, then act on it."""

    def node_succeeded(
        self, node: NodeRequest, result: Any, offer: Offer | None = None
    ) -> None:
        """Record a node's result and dispatch what it made ready.

        With ``offer``, the one task it makes ready may be claimed for this
        worker instead, to run once the current task returns (``handoff``).
        """
        try:
            check_result(result, self.max_result_bytes)
        except (EncodeError, ResultTooLarge) as refused:
            self.node_failed(node, refused, None, None, None)
            return
        outcome = self._recorded(
            node.workflow_id,
            node.node_id,
            node.number,
            node.kind,
            lambda: self._store.record_success(
                node.workflow_id,
                node.node_id,
                node.number,
                result,
                offer.handoff if offer is not None else None,
                # run in place, it follows a parent that alone made it
                # ready, as a chain's step does: its success likely makes
                # its own successor ready too
                counting_down=not is_running_in_place(node.node_id),
            ),
        )
        if outcome is None:
            return
        self._after(node.workflow_id, outcome)
        if outcome.carried is not None and offer is not None:
            self._carry(outcome.carried, offer)

    def _carry(self, successor: Dispatch, offer: Offer) -> None:
        """Run ``successor``, claimed for this worker, after the current task."""
        message = offer.message_of(successor)
        if message is not None:
            carry(message)
        else:
            why = "its message cannot be built"
            self.not_run_in_place(successor.workflow_id, successor.node_id, why)

    def not_run_in_place(self, workflow_id: str, node_id: str, why: str) -> None:
        """Give up a node claimed to run in this worker: recovery runs it."""
        logger.error(
            "node %s of workflow %s, claimed to run in place, did not run (%s); "
            "the recovery pass runs it",
            node_id,
            workflow_id,
            why,
        )
        self._liveness.release(workflow_id, node_id, FIRST_ATTEMPT)

    def node_failed(
        self,
        node: NodeRequest,
        exc: BaseException,
        traceback: str | None,
        request: Any,
        einfo: Any,
    ) -> None:
        """Record a failure for good: run errbacks, fail the workflow."""
        outcome = self._recorded(
            node.workflow_id,
            node.node_id,
            node.number,
            node.kind,
            lambda: self._store.record_failure(
                node.workflow_id,
                node.node_id,
                node.number,
                type(exc).__name__,
                str(exc),
                traceback,
            ),
        )
        if outcome is not None:
            self._after_failure(
                node.workflow_id, node.node_id, node.kind, outcome, exc, request, einfo
            )

    def node_replaced(self, node: NodeRequest, canvas: Any) -> bool:
        """Store what a node's task replaced itself with; dispatch its first nodes.

        False, and nothing stored, when this attempt of the node no longer
        runs. Raises what compiling ``canvas`` raises (``UnknownTask``,
        ``ReplacementTooLarge``, ...), and ``InvalidCanvas`` for an errback:
        the replacing task fails with it.
        """
        if node.kind != NodeKind.TASK:
            raise InvalidCanvas("an errback cannot replace itself (Task.replace)")
        label, errbacks = self._store.replaced_node(node.workflow_id, node.node_id)
        new = compile_replacement(
            self.app, canvas, label, errbacks, self.max_replacement_nodes
        )
        outcome = self._store.record_replacement(
            node.workflow_id, node.node_id, node.number, new
        )
        if outcome.recorded:
            self._after(node.workflow_id, outcome)
            self._store.analyze_new_tables()  # as after a submit
        return outcome.recorded

    def node_revoked(self, node: NodeRequest, reason: str) -> None:
        """Record a revoke; outside a cancel, the node's workflow fails."""
        outcome = self._store.record_revoked(node.workflow_id, node.node_id, reason)
        exc = TaskRevokedError(reason)
        self._after_failure(
            node.workflow_id, node.node_id, node.kind, outcome, exc, None, None
        )

    def _recorded(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        kind: str,
        record: Callable[[], Outcome],
    ) -> Outcome | None:
        """``record()``'s outcome for a running attempt, or None if it raised.

        Whatever it raised, the node does not stay RUNNING on this process's
        lease: it fails with the cause recorded, or, when the database cannot
        take even that (``StorageError``), the attempt is released for the
        recovery pass to run again.
        """
        try:
            return record()
        except Exception as cause:
            logger.error(
                "the outcome of node %s (attempt %d) cannot be recorded: %s",
                node_id,
                number,
                first_line(cause),
                exc_info=True,
            )
            traceback = without_nul(format_exc()[-TRACEBACK_LIMIT:])
            self._fail_unrecorded(workflow_id, node_id, number, kind, cause, traceback)
            return None

    def _fail_unrecorded(
        self,
        workflow_id: str,
        node_id: str,
        number: int,
        kind: str,
        cause: Exception,
        traceback: str,
    ) -> None:
        """Fail a node whose outcome could not be recorded, or release it."""
        if not isinstance(cause, StorageError):
            exc_type, exc_message = unrecorded_error(cause)
            try:
                outcome = self._store.record_failure(
                    workflow_id, node_id, number, exc_type, exc_message, traceback
                )
            except Exception:
                logger.error("node %s cannot be failed either", node_id, exc_info=True)
            else:
                recorded = rebuilt_exception(exc_type, exc_message)
                self._after_failure(
                    workflow_id, node_id, kind, outcome, recorded, None, None
                )
                return
        self._liveness.release(workflow_id, node_id, number)

    def _after(self, workflow_id: str, outcome: Outcome) -> Delivery:
        delivery = self._publish(outcome.dispatch)
        if outcome.failing:
            self._transition_quietly(workflow_id, "fail")
        if outcome.finished:
            self._transition_quietly(workflow_id, "complete")
        elif outcome.settle:
            self.settle(workflow_id)
        return delivery

    def _after_failure(
        self,
        workflow_id: str,
        node_id: str,
        kind: str,
        outcome: Outcome,
        exc: BaseException,
        request: Any,
        einfo: Any,
    ) -> None:
        """Run the errbacks a failure queued, then fail the workflow.

        ``request`` (with ``exc`` and ``einfo``): the failed task's, for the
        errbacks that take them; None to rebuild them from the database.
        """
        if not outcome.recorded:
            return
        live = None
        if request is not None:
            live = ErrbackArguments(request, exc, getattr(einfo, "traceback", None))
        self._publish(outcome.dispatch, live)
        if kind != NodeKind.ERRBACK:
            self._transition_quietly(workflow_id, "fail", failure_of(node_id, exc))
        elif outcome.settle:
            self.settle(workflow_id)


def without_nul(text: str) -> str:
    """``text`` with its NUL characters spelled out (a text column refuses them)."""
    return text.replace("\x00", "\\x00")


def unrecorded_error(cause: Exception) -> tuple[str, str]:
    """The error a node fails with when its outcome could not be recorded.

    The cause's type and first line; for an error of the database (wrapped
    by SQLAlchemy), the driver's own.
    """
    inner = cause.orig if isinstance(cause, sa.exc.StatementError) else None
    error = inner if isinstance(inner, Exception) else cause
    message = without_nul(first_line(error))
    return type(error).__name__, f"the outcome could not be recorded: {message}"
