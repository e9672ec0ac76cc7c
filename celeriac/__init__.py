"""celeriac: a persistent workflow engine on top of Celery."""

from celeriac.engine import Engine, Workflow
from celeriac.errors import (
    CeleriacError,
    InvalidCanvas,
    InvalidTransition,
    StorageError,
    UnknownTask,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
)
from celeriac.records import Attempt, Node, Progress
from celeriac.states import NodeState, WorkflowState

__all__ = [
    "Attempt",
    "CeleriacError",
    "Engine",
    "InvalidCanvas",
    "InvalidTransition",
    "Node",
    "NodeState",
    "Progress",
    "StorageError",
    "UnknownTask",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowState",
]
