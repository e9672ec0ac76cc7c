"""Every error celeriac raises.

::

    CeleriacError
    ├── WorkflowNotFound (also LookupError)
    ├── AmbiguousWorkflowId (also LookupError)
    ├── CorruptRecord
    ├── InvalidTransition
    ├── UnknownTask
    ├── ReplacementTooLarge
    ├── InvalidCanvas (also ValueError)
    ├── SubmitKeyReused (also ValueError)
    ├── WorkflowFailed
    ├── WorkflowCancelled
    ├── StorageError
    └── AppInUse (also RuntimeError)
"""

from __future__ import annotations


class CeleriacError(Exception):
    """Base class of every celeriac error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class WorkflowNotFound(CeleriacError, LookupError):
    """Raised when no workflow has the given id."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")


class AmbiguousWorkflowId(CeleriacError, LookupError):
    """Raised when a short id is the start of several workflows' ids."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        super().__init__(
            f"{prefix!r} is the start of several workflow ids: "
            f"{', '.join(candidates)}; give more of the id"
        )


class CorruptRecord(CeleriacError):
    """Raised when a stored row cannot be read back as celeriac wrote it.

    ``column`` names the value (``signature``, ``state``, ``metadata``, …) of
    the workflow ``workflow_id``, or of its node ``node_id`` when there is
    one; ``problem`` says what is wrong with it. Nothing was changed.
    """

    def __init__(
        self, workflow_id: str, node_id: str | None, column: str, problem: str
    ) -> None:
        self.workflow_id = workflow_id
        self.node_id = node_id
        self.column = column
        self.problem = problem
        where = f"workflow {workflow_id}"
        if node_id is not None:
            where = f"node {node_id} of {where}"
        super().__init__(f"{where}: stored {column} {problem}")


class InvalidTransition(CeleriacError):
    """Raised when the state machine does not allow an action; nothing changed."""

    def __init__(self, workflow_id: str, state: str, trigger: str) -> None:
        self.workflow_id = workflow_id
        self.state = state
        self.trigger = trigger
        super().__init__(f"cannot {trigger} workflow {workflow_id}: it is {state}")


class UnknownTask(CeleriacError):
    """Raised when a canvas names a task the app does not know; nothing is stored."""

    def __init__(self, task_name: str) -> None:
        self.task_name = task_name
        super().__init__(f"the Celery app has no task named {task_name!r}")

    def __reduce__(self) -> tuple[type[UnknownTask], tuple[str]]:
        # raised in a task body (a replacement), it is pickled: by its name
        return type(self), (self.task_name,)


class ReplacementTooLarge(CeleriacError):
    """A task replaced itself with more nodes than ``max_replacement_nodes``."""

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        super().__init__(
            f"the replacement adds more than max_replacement_nodes ({max_nodes:,}) "
            "nodes to the workflow"
        )

    def __reduce__(self) -> tuple[type[ReplacementTooLarge], tuple[int]]:
        # raised in a task body, it is pickled: by its limit, not its message
        return type(self), (self.max_nodes,)


class InvalidCanvas(CeleriacError, ValueError):
    """Raised when a canvas cannot be stored (for example, arguments not JSON)."""


class SubmitKeyReused(CeleriacError, ValueError):
    """Raised when a submit key names a workflow of another canvas; nothing stored."""

    def __init__(self, key: str, workflow_id: str) -> None:
        self.key = key
        self.workflow_id = workflow_id
        super().__init__(
            f"submit key {key!r} is already used by workflow {workflow_id}, "
            "with another canvas or other arguments"
        )


class WorkflowFailed(CeleriacError):
    """Raised by ``Workflow.get()`` when a node of the workflow failed for good."""

    def __init__(
        self, workflow_id: str, node_id: str | None, exc_type: str, exc_message: str
    ) -> None:
        self.workflow_id = workflow_id
        self.node_id = node_id
        self.exc_type = exc_type
        self.exc_message = exc_message
        super().__init__(
            f"workflow {workflow_id} failed at node {node_id}: "
            f"{exc_type}: {exc_message}"
        )


class WorkflowCancelled(CeleriacError):
    """Raised by ``Workflow.get()`` when the workflow was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id} was cancelled")


class StorageError(CeleriacError):
    """Raised when the database keeps failing after retries; the cause is chained."""

    def __init__(
        self, operation: str, attempts: int, seconds: float, reason: str
    ) -> None:
        self.operation = operation
        self.attempts = attempts
        self.seconds = seconds
        self.reason = reason
        super().__init__(
            f"the database kept failing in {operation}: {attempts} tries in "
            f"{seconds:.1f} s; last error: {reason}"
        )

    def __reduce__(self) -> tuple[type[StorageError], tuple[str, int, float, str]]:
        # A prefork pool child pickles the error for the worker's main
        # process; the default would call __init__ with the message alone.
        return type(self), (self.operation, self.attempts, self.seconds, self.reason)


class AppInUse(CeleriacError, RuntimeError):
    """Raised when an Engine is built on an app another live Engine is bound to.

    Workers of one app record into one database: close the first engine
    (``engine.close()``) before building another on the same app.
    """

    def __init__(self, app_name: str, database_url: str) -> None:
        self.app_name = app_name
        self.database_url = database_url
        super().__init__(
            f"the Celery app {app_name!r} already has a live celeriac Engine "
            f"(on {database_url}); close it before building another"
        )
