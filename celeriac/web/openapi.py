"""The OpenAPI 3.1 document of the HTTP API, served at ``/api/v1/openapi.json``.

``docs/openapi.json`` is this document as checked in; a test keeps the two
equal (``python -m celeriac.web.openapi > docs/openapi.json`` rewrites it).
"""

from __future__ import annotations

import json
from typing import Any

from celeriac.states import WorkflowState
from celeriac.web.actions import ACTIONS

_STATES = [str(state) for state in WorkflowState]


def _param(name: str, where: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


_ID = _param("workflow_id", "path", "The workflow's id, or its first 8+ characters.")
_NODE_ID = _param("node_id", "path", "The node's id.")
_FILTERS = [
    _param("state", "query", "Only workflows in this state.", enum=_STATES),
    _param("name", "query", "Only workflows with this name."),
    _param("since", "query", "Created at or after (ISO 8601; UTC if no zone)."),
    _param("before", "query", "Created before (ISO 8601; UTC if no zone)."),
    _param("failed", "query", "1: only workflows with a FAILED node.", enum=["0", "1"]),
    _param("id", "query", "Only workflows whose id starts with this."),
]


def _answer(description: str, schema: str) -> dict[str, Any]:
    content = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    }
    return {"description": description, "content": content}


_ERRORS = {
    "401": {"description": "Credentials are configured and the request has none."},
    "404": _answer("No workflow has this id.", "Error"),
    "422": _answer("A parameter cannot be used; the error names it.", "Error"),
}
_POST_ERRORS = {
    **_ERRORS,
    "403": _answer("The CSRF token is missing or wrong.", "Error"),
    "409": _answer(
        "The workflow's state does not allow the action, or the console is "
        "read-only, or cannot publish (no --app).",
        "Error",
    ),
}
_OBJECT = {"type": "object"}
_SCHEMAS = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "Workflow": {
        "type": "object",
        "description": "Fields as `celeriac list --json` prints them.",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "state": {"enum": _STATES},
            "result": {},
            "failed_node_id": {"type": ["string", "null"]},
            "exc_type": {"type": ["string", "null"]},
            "exc_message": {"type": ["string", "null"]},
            "metadata": {"type": ["object", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "key": {"type": ["string", "null"]},
            "progress": {"$ref": "#/components/schemas/Progress"},
        },
    },
    "Progress": {
        "type": "object",
        "properties": {
            name: {"type": "number"}
            for name in ("done", "total", "failed", "running", "partial", "fraction")
        },
    },
    "WorkflowPage": {
        "type": "object",
        "properties": {
            "workflows": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Workflow"},
            },
            "next": {
                "type": ["string", "null"],
                "description": "Pass as `after` for the next page; null on the last.",
            },
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "NodePage": {
        "type": "object",
        "properties": {
            "nodes": {
                "type": "array",
                "items": {
                    **_OBJECT,
                    "description": "As `celeriac show --json` lists nodes.",
                },
            },
            "next": {"type": ["integer", "null"]},
        },
    },
    "NodeDetail": {
        "type": "object",
        "description": "A node as `celeriac show --json` lists it, with more.",
        "properties": {
            "args": {
                "type": ["array", "null"],
                "description": "Its signature's positional arguments (null: "
                "a node that calls no task). Unless the signature is immutable, "
                "the parent's result comes before them.",
            },
            "kwargs": {"type": ["object", "null"]},
            "errbacks": {
                "type": "array",
                "items": {**_OBJECT, "description": "The errbacks guarding it."},
            },
        },
    },
    "ActionDone": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "state": {"enum": _STATES},
            "sent": {"type": "integer"},
            "unsent": {"type": "integer"},
            "refused": {"type": "integer"},
        },
    },
    "BulkDone": {
        "type": "object",
        "properties": {
            "action": {"enum": list(ACTIONS)},
            "dry_run": {"type": "boolean"},
            "eligible": {"type": "integer"},
            "changed": {"type": "integer"},
            "refused": {"type": "integer"},
        },
    },
}


def _action_paths() -> dict[str, Any]:
    body = {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "terminate": {
                            "type": "boolean",
                            "description": "cancel: also kill running tasks.",
                        }
                    },
                }
            }
        },
    }
    bulk_body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "filter": {
                            "type": "object",
                            "description": "The list's query parameters.",
                        },
                        "dry_run": {"type": "boolean"},
                    },
                }
            }
        },
    }
    paths: dict[str, Any] = {}
    for action in ACTIONS:
        paths[f"/workflows/{{workflow_id}}/{action}"] = {
            "post": {
                "summary": f"{action.capitalize()} one workflow.",
                "parameters": [_ID],
                "requestBody": body,
                "responses": {"200": _answer("Done.", "ActionDone"), **_POST_ERRORS},
            }
        }
        paths[f"/bulk/{action}"] = {
            "post": {
                "summary": f"{action.capitalize()} every workflow matching a filter.",
                "requestBody": bulk_body,
                "responses": {"200": _answer("Done.", "BulkDone"), **_POST_ERRORS},
            }
        }
    return paths


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    limit = _param("limit", "query", "Page size.", type="integer", minimum=1)
    after = _param("after", "query", "The `next` value of the previous page.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "celeriac",
            "version": "1",
            "description": "Workflows stored by celeriac: read them, act on them. "
            "POSTs need the X-CSRF-Token header (the celeriac_csrf cookie's "
            "value) unless they carry a bearer token.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/workflows": {
                "get": {
                    "summary": "Workflows, newest first, filtered; keyset pages.",
                    "parameters": [*_FILTERS, limit, after],
                    "responses": {"200": _answer("A page.", "WorkflowPage"), **_ERRORS},
                }
            },
            "/workflows/{workflow_id}": {
                "get": {
                    "summary": "One workflow, with its progress.",
                    "parameters": [_ID],
                    "responses": {
                        "200": _answer("The workflow.", "Workflow"),
                        **_ERRORS,
                    },
                }
            },
            "/workflows/{workflow_id}/progress": {
                "get": {
                    "summary": "How far the workflow got.",
                    "parameters": [_ID],
                    "responses": {
                        "200": _answer("Its progress.", "Progress"),
                        **_ERRORS,
                    },
                }
            },
            "/workflows/{workflow_id}/nodes": {
                "get": {
                    "summary": "Its nodes in canvas order, a page at a time.",
                    "parameters": [_ID, limit, after],
                    "responses": {"200": _answer("A page.", "NodePage"), **_ERRORS},
                }
            },
            "/workflows/{workflow_id}/nodes/{node_id}": {
                "get": {
                    "summary": "One node: its attempts, arguments, result, errbacks.",
                    "parameters": [_ID, _NODE_ID],
                    "responses": {
                        "200": _answer("The node.", "NodeDetail"),
                        **_ERRORS,
                        "404": _answer("No workflow or node has this id.", "Error"),
                    },
                }
            },
            **_action_paths(),
        },
        "components": {"schemas": _SCHEMAS},
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))
