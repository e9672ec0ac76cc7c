"""What a task's request says about the node it runs."""

from __future__ import annotations

from typing import Any

from celeriac.engine.scheduler import HEADER
from celeriac.records import delivery_key
from celeriac.states import NodeKind

#: How much of a traceback an attempt keeps: its end, where the error is.
TRACEBACK_LIMIT = 4000
#: Where the claim leaves the attempt number on Celery's request object.
ATTEMPT = "celeriac_attempt"


class NodeRequest:
    """What a task's request says about the node it runs."""

    def __init__(self, request: Any) -> None:
        header = (getattr(request, "headers", None) or {}).get(HEADER) or getattr(
            request, HEADER, None
        )
        self.is_node = isinstance(header, dict)
        header = header if isinstance(header, dict) else {}
        self.workflow_id: str = header.get("w", "")
        self.kind: str = header.get("k", NodeKind.TASK)
        self.node_id: str = request.id
        #: which message this is: a dispatch (base) and Celery's retry count
        self.delivery = delivery_key(int(header.get("b", 0)), int(request.retries or 0))
        #: the attempt the claim recorded for this execution (0: none)
        self.number: int = getattr(request, ATTEMPT, 0)
