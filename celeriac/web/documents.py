"""The JSON the HTTP API answers: the same shapes as the CLI's ``--json``.

A workflow is its record's fields (``celeriac list --json``), with
``progress`` where one workflow is shown (``celeriac show --json``); a node
is a ``Node``'s fields and its ``duration`` in seconds; one node alone adds
its signature's ``args`` and ``kwargs`` and its ``errbacks``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse

from celeriac.records import Delivery, Node, Progress, WorkflowRecord


def workflow_document(record: WorkflowRecord) -> dict[str, Any]:
    """A workflow as ``celeriac list --json`` prints it."""
    return dataclasses.asdict(record)


def progress_document(progress: Progress) -> dict[str, Any]:
    """A workflow's progress, with its ``fraction`` done."""
    return {**dataclasses.asdict(progress), "fraction": progress.fraction}


def node_document(node: Node) -> dict[str, Any]:
    """A node as ``celeriac show --json`` lists it."""
    return {**dataclasses.asdict(node), "duration": node.duration}


def node_detail_document(
    node: Node, errbacks: list[Node], arguments: tuple[list[Any], dict[str, Any]] | None
) -> dict[str, Any]:
    """One node with its signature's ``args`` and ``kwargs`` and its ``errbacks``."""
    args, kwargs = arguments or (None, None)
    return {
        **node_document(node),
        "args": args,
        "kwargs": kwargs,
        "errbacks": [node_document(errback) for errback in errbacks],
    }


def action_document(workflow_id: str, state: str, delivery: Delivery) -> dict[str, Any]:
    """What an action did, as the CLI's action commands print with ``--json``."""
    return {"id": workflow_id, "state": state, **dataclasses.asdict(delivery)}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class Json(JSONResponse):
    """A JSON response whose times are ISO 8601 text (and anything else, ``str``)."""

    def render(self, content: Any) -> bytes:
        """The body, as compact UTF-8 JSON."""
        return json.dumps(
            content, default=_plain, ensure_ascii=False, separators=(",", ":")
        ).encode()


def error(status: int, reason: str) -> Json:
    """An error answer: ``{"error": reason}``."""
    return Json({"error": reason}, status_code=status)
