"""Plain records passed between the engine, the store and users.

``Node``, ``Attempt``, ``Progress``, ``Delivery``, ``WorkflowRecord``, the
listing's ``WorkflowFilter`` and ``WorkflowCursor`` are public (API.md), and
so are a drawing's records (``outlines``); the others carry a compiled canvas
into the store and the store's answers back to the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Attempt:
    """One run of a node's body."""

    number: int
    state: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    exc_type: str | None
    exc_message: str | None
    pid: int | None = None
    traceback: str | None = None
    retry_eta: datetime | None = None

    @property
    def runtime(self) -> float | None:
        """Seconds between start and finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class NodeProgress:
    """What a node's task body last reported (``celeriac.report_progress``)."""

    current: float
    #: None while the body does not know how much work there is
    total: float | None
    message: str | None
    at: datetime | None

    @property
    def fraction(self) -> float | None:
        """``current / total``, clamped to 0.0 to 1.0; None without a total."""
        if not self.total or self.total <= 0:
            return None
        return min(max(self.current / self.total, 0.0), 1.0)


@dataclass(frozen=True)
class Node:
    """One task of a workflow, with its attempts."""

    id: str
    task: str | None
    state: str
    kind: str
    position: int
    attempts: list[Attempt]
    result: Any
    error: str | None
    exc_type: str | None = None
    label: str | None = None
    parents: list[str] = field(default_factory=list)
    #: the body's last progress report, if it made one
    progress: NodeProgress | None = None
    #: the node whose task replaced itself with this one (``Task.replace``)
    replaces: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the last one's end."""
        if not self.attempts:
            return None
        first, last = self.attempts[0], self.attempts[-1]
        if first.started_at is None or last.finished_at is None:
            return None
        return (last.finished_at - first.started_at).total_seconds()


@dataclass(frozen=True)
class Progress:
    """How far a workflow (or a labelled part of it) got."""

    done: int
    total: int
    failed: int
    running: int
    #: running nodes counted by the fraction of their work they reported
    partial: float = 0.0

    @property
    def fraction(self) -> float:
        """Share of the work done, from 0.0 to 1.0: ``(done + partial) / total``."""
        if not self.total:
            return 1.0
        return min((self.done + self.partial) / self.total, 1.0)


@dataclass(frozen=True)
class Delivery:
    """What an action handed to the broker (``resume``, ``retry``, ``recover``).

    For ``cancel``, the messages are the revoke requests of its running tasks.
    """

    #: messages the broker took: nodes published (or running tasks revoked)
    sent: int = 0
    #: messages not sent because the broker could not be used: the nodes stay
    #: QUEUED and a recovery pass publishes them once it is back
    unsent: int = 0
    #: nodes Celery refused to send (their arguments do not fit the task):
    #: they failed, as they would natively
    refused: int = 0

    @property
    def broker_down(self) -> bool:
        """True when there was something to send and none of it went out."""
        return self.unsent > 0 and self.sent == 0

    def __add__(self, other: Delivery) -> Delivery:
        """Both counts together: an action that sends in several batches."""
        return Delivery(
            self.sent + other.sent,
            self.unsent + other.unsent,
            self.refused + other.refused,
        )


@dataclass(frozen=True)
class WorkflowRecord:
    """A workflow row as the engine reads it."""

    id: str
    name: str | None
    state: str
    result: Any
    failed_node_id: str | None
    exc_type: str | None
    exc_message: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    #: the first failure's exception class ("module:qualname") and its
    #: arguments as JSON text, to rebuild it (None: not known)
    exc_class: str | None = None
    exc_args: str | None = None
    #: the idempotency key it was submitted with
    key: str | None = None


@dataclass(frozen=True)
class WorkflowFilter:
    """What a listing keeps; every field left empty keeps all workflows."""

    state: str | None = None
    name: str | None = None
    #: the idempotency key it was submitted with
    key: str | None = None
    #: created at or after this moment
    created_after: datetime | None = None
    #: created before this moment
    created_before: datetime | None = None
    #: the workflow's id starts with this
    id_prefix: str | None = None
    #: only workflows with a FAILED node
    failed_node: bool = False

    def without_state(self) -> WorkflowFilter:
        """The same filter in every state (for the counts per state)."""
        return replace(self, state=None)


@dataclass(frozen=True)
class WorkflowCursor:
    """Where a page of workflows ends: its last one's creation time and id."""

    created_at: datetime
    workflow_id: str


@dataclass(frozen=True, slots=True)
class NewNode:
    """A node the compiler made, before it is stored."""

    id: str
    position: int
    kind: str
    task: str | None
    signature: dict[str, Any] | None
    waiting: int
    label: str | None = None


@dataclass(frozen=True, slots=True)
class NewEdge:
    """An edge: ``child`` waits for ``parent`` (``on_error``: runs if it fails)."""

    parent_id: str
    child_id: str
    position: int
    on_error: bool = False


#: Takes each edge of a graph as the canvas walk makes it.
EdgeSink = Callable[[NewEdge], None]


@dataclass(frozen=True)
class NewGraph:
    """A canvas walked: its nodes, the node holding its result, the ids it chose."""

    nodes: list[NewNode]
    result_node_id: str
    #: node ids the canvas chose (frozen task ids): no stored node may have one
    frozen_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class NewWorkflow:
    """Everything the store writes for one submission, in one transaction."""

    id: str
    name: str | None
    canvas: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    metadata: dict[str, Any] | None
    #: walks the canvas, handing each edge to the sink as it is made, and
    #: returns the rest. The store calls it inside the submit's transaction
    #: (again if the transaction is retried): the database stores the edges
    #: while the walk goes on.
    walk: Callable[[EdgeSink], NewGraph]
    #: the idempotency key given to ``submit`` (one workflow per key)
    key: str | None = None
    #: what the workflow does after a failure (``states.OnFailure``)
    on_failure: str = "continue"
    #: ``canvas`` as Celery's JSON text, when it was encoded already
    canvas_text: str | None = None


@dataclass(frozen=True)
class NewReplacement:
    """A replacing canvas compiled, to link in where its replaced node stood."""

    nodes: list[NewNode]
    edges: list[NewEdge]
    #: the node holding the replacement's result: the replaced node's value
    result_node_id: str
    #: its nodes that nothing waits for besides the result node: END waits
    leaves: list[str]
    frozen_ids: tuple[str, ...] = ()


#: The longest id a workflow or a node may have (the id columns' length).
MAX_ID_LENGTH = 64
#: The fewest characters a short workflow id may have: ``show`` prints this many.
SHORT_ID_LENGTH = 8


class Failure(NamedTuple):
    """A node's failure for good, as its workflow keeps it."""

    node_id: str | None
    exc_type: str
    exc_message: str
    #: "module:qualname" of the exception's class (None: not known)
    exc_class: str | None = None
    #: the exception's arguments as JSON text (None: not known)
    exc_args: str | None = None


@dataclass(frozen=True)
class Dispatch:
    """A node to publish now: its signature and the value its parent passes in."""

    node_id: str
    workflow_id: str
    signature: dict[str, Any]
    inputs: tuple[Any, ...]
    attempt_base: int
    kind: str
    #: Celery's retry count for the message: non-zero when recovery sends
    #: again a retry whose message was lost
    retries: int = 0


@dataclass(frozen=True)
class Outcome:
    """What recording a node's outcome set in motion."""

    recorded: bool
    dispatch: list[Dispatch]
    workflow_state: str | None
    finished: bool = False
    settle: bool = False
    #: the workflow has a failure and this outcome released nothing: it may
    #: have been the last node that could run
    failing: bool = False
    #: the successor claimed for the worker that offered to run it
    #: (``Handoff``), at attempt 1; it is not in ``dispatch``
    carried: Dispatch | None = None


@dataclass(frozen=True)
class TransitionResult:
    """What a workflow state change did."""

    source: str
    dest: str
    dispatch: list[Dispatch]
    revoke: list[str]
    #: when set, the nodes it queued then, to publish a page at a time
    #: (``Store.queued_page``): a resume of a million ready nodes
    queued_at: datetime | None = None


@dataclass(frozen=True)
class FailedCall:
    """A failed node's call and its last error, as stored: what its errbacks get."""

    #: the node's dispatch: its signature and its parent's result
    dispatch: Dispatch
    task: str | None
    exc_type: str
    exc_message: str
    traceback: str | None


@dataclass(frozen=True)
class Handoff:
    """A worker's offer to run the one successor a success makes ready.

    Accepted, the successor is claimed in the success's transaction, on
    ``lease`` with ``token``, and the worker runs it without the broker.
    """

    lease: Lease
    token: str
    #: whether the worker can run this node itself (its queue, its options)
    accepts: Callable[[Dispatch], bool]
    #: whether the success may claim the successor in its own statement,
    #: before ``accepts`` sees it (a refusal then undoes the transaction)
    claims_early: bool = True


@dataclass(frozen=True)
class Lease:
    """The worker process claiming a node, and when a silent worker counts as dead."""

    worker_id: str
    hostname: str | None
    pid: int
    dead_before: datetime


class Claim(Enum):
    """The answer to a worker asking whether it may run a node's body."""

    RUN = "run"
    #: the workflow is pausing: the node went back to PENDING
    HOLD = "hold"
    #: a duplicate, or the workflow no longer runs this node
    DROP = "drop"


def delivery_key(base: int, retries: int) -> str:
    """The name of one message of a node: its dispatch and Celery's retry count.

    ``base`` is the number of attempts the node had when it was dispatched
    (a resume or a recovery dispatches it anew); Celery's own retries of that
    dispatch count ``retries`` from 0.
    """
    return f"{base}.{retries}"
