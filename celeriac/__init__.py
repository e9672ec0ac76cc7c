"""celeriac: a persistent workflow engine on top of Celery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac.errors import (
    AmbiguousWorkflowId,
    AppInUse,
    CeleriacError,
    CorruptRecord,
    InvalidCanvas,
    InvalidTransition,
    ReplacementTooLarge,
    StorageError,
    SubmitKeyReused,
    UnknownTask,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
)
from celeriac.outlines import Cluster, Clustered, Outline, OutlineNode
from celeriac.records import (
    Attempt,
    Delivery,
    Node,
    NodeProgress,
    Progress,
    WorkflowCursor,
    WorkflowFilter,
    WorkflowRecord,
)
from celeriac.states import NodeState, WorkflowState

if TYPE_CHECKING:
    from celeriac.engine import Engine, Workflow
    from celeriac.engine.progress import report_progress


def __getattr__(name: str) -> Any:
    """Import the engine (and so Celery) only when it is asked for.

    ``celeriac.storage`` must import without Celery; importing it imports
    this package first.
    """
    if name in ("Engine", "Workflow"):
        from celeriac import engine

        return getattr(engine, name)
    if name == "report_progress":
        from celeriac.engine.progress import report_progress

        return report_progress
    raise AttributeError(f"module 'celeriac' has no attribute {name!r}")


__all__ = [
    "AmbiguousWorkflowId",
    "AppInUse",
    "Attempt",
    "CeleriacError",
    "Cluster",
    "Clustered",
    "CorruptRecord",
    "Delivery",
    "Engine",
    "InvalidCanvas",
    "InvalidTransition",
    "Node",
    "NodeProgress",
    "NodeState",
    "Outline",
    "OutlineNode",
    "Progress",
    "ReplacementTooLarge",
    "StorageError",
    "SubmitKeyReused",
    "UnknownTask",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowCursor",
    "WorkflowFailed",
    "WorkflowFilter",
    "WorkflowNotFound",
    "WorkflowRecord",
    "WorkflowState",
    "report_progress",
]
