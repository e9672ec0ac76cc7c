"""Workflow and node states, and the two tables of their transitions.

The engine builds its ``transitions.Machine`` from :data:`WORKFLOW_TRANSITIONS`;
nothing else decides whether a workflow may change state. Every change of a
node's state is an edge of :data:`NODE_TRANSITIONS`, and whether a node may
start under a workflow's state is read from it (:func:`may_start`).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    #: its body replaced itself (``Task.replace``): it waits for its
    #: replacement's result, and completes with it
    REPLACED = "REPLACED"


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
    #: its body replaced itself (``Task.replace``)
    REPLACED = "REPLACED"


#: The states a workflow ends in, in declaration order (what a purge takes).
FINISHED_WORKFLOW_STATES = (
    WorkflowState.COMPLETED,
    WorkflowState.FAILED,
    WorkflowState.CANCELLED,
)
TERMINAL_WORKFLOW_STATES = frozenset(FINISHED_WORKFLOW_STATES)
FINISHED_NODE_STATES = frozenset(
    {NodeState.SUCCEEDED, NodeState.FAILED, NodeState.CANCELLED, NodeState.SKIPPED}
)

_W = WorkflowState
#: Every allowed change of a workflow's state: one edge per entry, in API.md
#: order, with its reason (the engine's machine is built without it).
WORKFLOW_TRANSITIONS: list[dict[str, str | list[str]]] = [
    {
        "trigger": "pause",
        "source": _W.IN_PROGRESS,
        "dest": _W.REQUESTING_PAUSE,
        "reason": "you: pause(); nothing new starts, running nodes finish and "
        "are recorded",
    },
    {
        "trigger": "settle",
        "source": _W.REQUESTING_PAUSE,
        "dest": _W.PAUSED,
        "reason": "the engine, when the last running node is recorded",
    },
    {
        "trigger": "resume",
        "source": [_W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.IN_PROGRESS,
        "reason": "you: resume(); every ready node is dispatched again",
    },
    {
        "trigger": "complete",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.COMPLETED,
        "reason": "the engine, when END completes (from PAUSED too: a settle "
        "may win the race)",
    },
    {
        "trigger": "fail",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.FAILED,
        "reason": "the engine, when a task node failed for good and nothing more "
        'can run (at once with on_failure="stop")',
    },
    {
        "trigger": "cancel",
        "source": [_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED],
        "dest": _W.CANCELLED,
        "reason": "you: cancel(); running tasks are revoked, nothing is "
        "dispatched again",
    },
    {
        "trigger": "retry",
        "source": _W.FAILED,
        "dest": _W.IN_PROGRESS,
        "reason": "you: retry(); failed and unrun nodes run, succeeded ones do not",
    },
]


@dataclass(frozen=True)
class NodeTransition:
    """One allowed change of a node's state: an edge of :data:`NODE_TRANSITIONS`."""

    #: what moves the node (a worker's report, a claim, a workflow's change)
    trigger: str
    source: tuple[NodeState, ...]
    dest: NodeState
    #: the kinds of node the edge applies to
    kinds: tuple[NodeKind, ...]
    #: the workflow's state when the node moves (after a workflow transition
    #: made in the same transaction)
    workflow: tuple[WorkflowState, ...]
    reason: str


_N = NodeState
_K = NodeKind
_ALL = tuple(WorkflowState)
_OPEN = (_W.IN_PROGRESS, _W.REQUESTING_PAUSE, _W.PAUSED)
_RUN = (_K.TASK, _K.ERRBACK)
#: The rule, written once: the workflow states under which a node of each
#: kind may start (be queued, claimed, published again). A task runs while
#: its workflow is IN_PROGRESS; an errback also while it pauses, failed or
#: completed (it handles a failure), never once cancelled.
_STARTS: dict[NodeKind, tuple[WorkflowState, ...]] = {
    _K.TASK: (_W.IN_PROGRESS,),
    _K.ERRBACK: tuple(state for state in _ALL if state != _W.CANCELLED),
}


def _while_startable(
    trigger: str, source: tuple[NodeState, ...], dest: NodeState, reason: str
) -> list[NodeTransition]:
    """One edge per kind of node, under the workflow states it may start in."""
    return [
        NodeTransition(trigger, source, dest, (kind,), states, reason)
        for kind, states in _STARTS.items()
    ]


#: Every allowed change of a node's state, with its reason. The storage
#: moves nodes only along these edges (tests check every recorded change);
#: ``docs/concepts.md`` draws the table from here (``scripts/state-tables``).
NODE_TRANSITIONS: list[NodeTransition] = [
    *_while_startable(
        "queue",
        (_N.PENDING,),
        _N.QUEUED,
        "its parents all succeeded, or it is a root (a task); a node it guards "
        "failed for good (an errback); held back, then resumed or retried",
    ),
    *_while_startable(
        "start",
        (_N.QUEUED, _N.RETRYING, _N.RUNNING),
        _N.RUNNING,
        "a worker claimed its message: an attempt begins (from RUNNING when "
        "Celery's retry overtook the report of the attempt before it)",
    ),
    *_while_startable(
        "republish",
        (_N.QUEUED,),
        _N.QUEUED,
        "recovery publishes its message again: not started long after queued",
    ),
    *_while_startable(
        "republish",
        (_N.RETRYING,),
        _N.RETRYING,
        "recovery publishes its Celery retry again: overdue, lost with a worker",
    ),
    *_while_startable(
        "requeue",
        (_N.RUNNING,),
        _N.QUEUED,
        "its worker stopped heartbeating: the lost attempt runs again",
    ),
    NodeTransition(
        "hold",
        (_N.QUEUED, _N.RETRYING, _N.RUNNING),
        _N.PENDING,
        (_K.TASK,),
        (_W.REQUESTING_PAUSE, _W.PAUSED),
        "it may not start while its workflow pauses: a message that comes, or "
        "an attempt lost, waits for resume()",
    ),
    NodeTransition(
        "succeed",
        (_N.RUNNING,),
        _N.SUCCEEDED,
        _RUN,
        _ALL,
        "its body returned; a body already running finishes and is recorded "
        "whatever the workflow does meanwhile",
    ),
    NodeTransition(
        "join",
        (_N.PENDING,),
        _N.SUCCEEDED,
        (_K.JOIN, _K.END),
        (*_OPEN, _W.FAILED),
        "its last parent succeeded: it completes in the database (END "
        "completes the workflow)",
    ),
    NodeTransition(
        "replace",
        (_N.RUNNING,),
        _N.REPLACED,
        (_K.TASK,),
        _ALL,
        "its body replaced itself (Task.replace): the replacement's nodes are "
        "added in the same transaction, and it waits for their result",
    ),
    NodeTransition(
        "replaced",
        (_N.REPLACED,),
        _N.SUCCEEDED,
        (_K.TASK,),
        (*_OPEN, _W.FAILED),
        "its replacement succeeded: it completes in the database with the "
        "replacement's result",
    ),
    NodeTransition(
        "retry",
        (_N.RUNNING,),
        _N.RETRYING,
        _RUN,
        _ALL,
        "its body asked Celery for a retry (self.retry(), autoretry_for)",
    ),
    NodeTransition(
        "fail",
        (_N.RUNNING,),
        _N.FAILED,
        _RUN,
        _ALL,
        "its body raised and Celery will not retry it",
    ),
    NodeTransition(
        "unsendable",
        (_N.QUEUED,),
        _N.FAILED,
        _RUN,
        _STARTS[_K.ERRBACK],
        "Celery refused to build its message (arguments its task cannot take)",
    ),
    NodeTransition(
        "revoke",
        (_N.PENDING, _N.QUEUED, _N.RETRYING, _N.RUNNING),
        _N.FAILED,
        _RUN,
        _OPEN,
        "Celery revoked it while its workflow runs (expires, celery control "
        "revoke): it can never finish",
    ),
    NodeTransition(
        "lose",
        (_N.RUNNING,),
        _N.RUNNING,
        _RUN,
        _ALL,
        "its worker stopped heartbeating: the attempt is LOST",
    ),
    NodeTransition(
        "skip",
        (_N.PENDING, _N.QUEUED, _N.RETRYING, _N.RUNNING),
        _N.SKIPPED,
        _RUN,
        (_W.FAILED, _W.COMPLETED),
        "its workflow ended without it: a task the failure stopped (a message "
        "that comes, an attempt lost), an errback never needed",
    ),
    NodeTransition(
        "cancel",
        (_N.PENDING, _N.QUEUED, _N.RETRYING, _N.RUNNING, _N.REPLACED),
        _N.CANCELLED,
        tuple(NodeKind),
        (_W.CANCELLED,),
        "its workflow was cancelled before it finished (a running body is "
        "revoked; recorded as CANCELLED when its revoke or loss is)",
    ),
    NodeTransition(
        "reset",
        (_N.FAILED, _N.SKIPPED),
        _N.PENDING,
        (_K.TASK,),
        (_W.IN_PROGRESS,),
        "retry() of its workflow: a failed or skipped task may run again",
    ),
]

#: The triggers that put a node aside when it may not start.
_ASIDE = ("hold", "skip", "cancel")


def may_start(kind: str, workflow_state: str) -> bool:
    """Whether a node of ``kind`` may start in a workflow in ``workflow_state``."""
    return workflow_state in _STARTS.get(kind, ())  # type: ignore[call-overload]


def starts_under(kind: NodeKind) -> tuple[WorkflowState, ...]:
    """The workflow states under which a node of ``kind`` may start."""
    return _STARTS.get(kind, ())


def held_back_as(workflow_state: str) -> NodeState:
    """Where a node goes that may not start under ``workflow_state``.

    PENDING while the workflow pauses, SKIPPED once it failed or completed,
    CANCELLED once cancelled: the dest of the table's hold, skip and cancel
    edges.
    """
    for edge in NODE_TRANSITIONS:
        if edge.trigger in _ASIDE and workflow_state in edge.workflow:
            return edge.dest
    raise ValueError(f"nodes of a workflow {workflow_state} are not put aside")


def sources_of(trigger: str) -> tuple[NodeState, ...]:
    """Every state an edge of ``trigger`` leaves from, in the table's order."""
    found = [
        state
        for edge in NODE_TRANSITIONS
        if edge.trigger == trigger
        for state in edge.source
    ]
    return tuple(dict.fromkeys(found))
