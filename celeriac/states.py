"""Workflow and node states, and the one table of workflow transitions.

The engine builds its ``transitions.Machine`` from :data:`WORKFLOW_TRANSITIONS`;
nothing else decides whether a workflow may change state.
"""

from __future__ import annotations

from enum import StrEnum


class WorkflowState(StrEnum):
    """The states of a workflow, as in API.md."""

    #: ready nodes are dispatched as their parents finish
    IN_PROGRESS = "IN_PROGRESS"
    #: nothing new is dispatched; running nodes finish and are recorded
    REQUESTING_PAUSE = "REQUESTING_PAUSE"
    #: pause asked for and nothing is running
    PAUSED = "PAUSED"
    #: every node succeeded; the result is stored
    COMPLETED = "COMPLETED"
    #: a node failed for good
    FAILED = "FAILED"
    #: nothing is dispatched again; running tasks were revoked
    CANCELLED = "CANCELLED"


class NodeState(StrEnum):
    """The states of one node of a workflow."""

    #: waiting for its parents, or ready but held back (pause, failure)
    PENDING = "PENDING"
    #: its message is published, or about to be (the outbox)
    QUEUED = "QUEUED"
    #: a worker runs its body
    RUNNING = "RUNNING"
    #: Celery will deliver it again (``self.retry``, ``autoretry_for``)
    RETRYING = "RETRYING"
    #: finished; its result is stored
    SUCCEEDED = "SUCCEEDED"
    #: failed for good
    FAILED = "FAILED"
    #: the workflow was cancelled before the node finished
    CANCELLED = "CANCELLED"
    #: will never run (an errback that was not needed)
    SKIPPED = "SKIPPED"


class NodeKind(StrEnum):
    """What a node is: a task message, or bookkeeping done in the database."""

    #: one message of the user's task
    TASK = "TASK"
    #: collects its parents' results into a list (a group's result, a chord's join)
    JOIN = "JOIN"
    #: waits for every other node: its completion completes the workflow
    END = "END"
    #: a ``link_error`` signature, run when a node it guards fails
    ERRBACK = "ERRBACK"


#: The key of a JOIN's signature that marks an empty group's join: it waits
#: for the step before the group, and its value is ``[]``, not that step's.
EMPTY_GROUP_KEY = "empty_group"


class OnFailure(StrEnum):
    """What a workflow does once a node failed for good (``on_failure``)."""

    #: every node whose parents all succeeded still runs, as in Celery; the
    #: workflow is FAILED once nothing more can run
    CONTINUE = "continue"
    #: nothing that has not started yet runs: the workflow is FAILED at once
    STOP = "stop"

    @classmethod
    def named(cls, value: str) -> OnFailure:
        """The policy called ``value``; a ValueError names a wrong one."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(
                f"on_failure must be 'continue' or 'stop', not {value!r}"
            ) from None


class AttemptState(StrEnum):
    """The outcome of one run of a node's body."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRY = "RETRY"
    REVOKED = "REVOKED"
    #: its worker died (no heartbeat) before it finished
    LOST = "LOST"


TERMINAL_WORKFLOW_STATES = frozenset(
    {WorkflowState.COMPLETED, WorkflowState.FAILED, WorkflowState.CANCELLED}
)
FINISHED_NODE_STATES = frozenset(
    {NodeState.SUCCEEDED, NodeState.FAILED, NodeState.CANCELLED, NodeState.SKIPPED}
)

_W = WorkflowState
#: Every allowed change of a workflow's state: one edge per line, in API.md order.
WORKFLOW_TRANSITIONS: list[dict[str, str | list[str]]] = [
    # stop dispatching; running nodes finish and are recorded
    {"trigger": "pause", "source": _W.IN_PROGRESS, "dest": _W.REQUESTING_PAUSE},
    # the last running node was recorded
    {"trigger": "settle", "source": _W.REQUESTING_PAUSE, "dest": _W.PAUSED},
    # dispatch every ready node again
    {
        "trigger": "resume",
        "source": [_W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.IN_PROGRESS,
    },
    # the last node finished; PAUSED is a source because a settle may win the race
    {
        "trigger": "complete",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.COMPLETED,
    },
    # a node failed for good and, unless on_failure="stop", nothing more can
    # run; PAUSED for the same race as above
    {
        "trigger": "fail",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.FAILED,
    },
    # revoke running tasks; dispatch nothing more
    {
        "trigger": "cancel",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.CANCELLED,
    },
    # an operator fixed the cause: failed and unrun nodes run, succeeded ones do not
    {"trigger": "retry", "source": _W.FAILED, "dest": _W.IN_PROGRESS},
]
